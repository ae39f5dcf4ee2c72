import { Command } from 'commander';
import { NEXUS_VERSION } from '../contracts/version.js';
import { registerAgent } from './commands/agent.js';
import { registerDev } from './commands/dev.js';
import { registerDoctor } from './commands/doctor.js';
import { registerHostsJoinToken } from './commands/hosts-join-token.js';
import { registerHostsList } from './commands/hosts-list.js';
import { registerHostsRotateCredential } from './commands/hosts-rotate-credential.js';
import { registerImageBuild } from './commands/image-build.js';
import { registerImageList } from './commands/image-list.js';
import { registerManager } from './commands/manager.js';
import { registerMigrate } from './commands/migrate.js';
import { registerNetworkCreate } from './commands/network-create.js';
import { registerNetworkInspect } from './commands/network-inspect.js';
import { registerNetworkList } from './commands/network-list.js';
import { registerNetworkRemove } from './commands/network-remove.js';
import { registerSnapshotCommands } from './commands/snapshot.js';
import { registerVmCreate } from './commands/vm-create.js';
import { registerVmInspect } from './commands/vm-inspect.js';
import { registerVmLifecycle } from './commands/vm-lifecycle.js';
import { registerVmList } from './commands/vm-list.js';
import { printError } from './output/print.js';

/** The `nexus` command line. */
export async function main(argv: string[]): Promise<void> {
  const program = new Command('nexus')
    .description('Nexus: microVMs as easy to operate as containers')
    .version(NEXUS_VERSION)
    .showHelpAfterError()
    .enablePositionalOptions();

  registerDev(program);
  registerManager(program);
  registerAgent(program);
  registerMigrate(program);
  registerDoctor(program);
  const hosts = program.command('hosts').description('the hosts agents run on');
  registerHostsList(hosts);
  registerHostsJoinToken(hosts);
  registerHostsRotateCredential(hosts);
  const image = program.command('image').description('guest images');
  registerImageBuild(image);
  registerImageList(image);
  const vm = program.command('vm').description('VMs');
  registerVmCreate(vm);
  registerVmList(vm);
  registerVmInspect(vm);
  registerVmLifecycle(vm);
  const network = program.command('network').description('networks VMs get addresses on');
  registerNetworkCreate(network);
  registerNetworkList(network);
  registerNetworkInspect(network);
  registerNetworkRemove(network);
  registerSnapshotCommands(program.command('snapshot').description('snapshots of VMs, kept on their hosts'));

  try {
    await program.parseAsync(argv);
  } catch (error) {
    printError(error, argv.includes('--json'));
    process.exitCode = 1;
  }
}
