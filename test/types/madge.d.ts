/** The part of madge's API the lint test uses (the package ships no types; @types/madge describes 5.x). */
declare module 'madge' {
  interface MadgeResult {
    /** Each import cycle, as the files in it, relative to the folder given. */
    circular(): string[][];
  }
  export default function madge(path: string, config: { fileExtensions?: string[]; tsConfig?: string }): Promise<MadgeResult>;
}
