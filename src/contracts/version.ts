/** The Nexus release, reported by both processes so a version skew shows in `hosts list`. */
export const NEXUS_VERSION = '0.1.0';
