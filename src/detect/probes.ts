/** The probe table (contract §2.1): canonical runtime → binaries in order → version argument → parser. */
export type VersionStyle = 'semver' | 'java';
export interface ProbeSpec {
  name: string;
  binaries: readonly string[];
  versionArgs: readonly string[];
  style: VersionStyle;
  /** File extension of an auto-registered runtime row (contract §2.4). */
  fileExtension: string;
}

export const PROBES: readonly ProbeSpec[] = [
  { name: 'shell', binaries: ['bash', 'sh'], versionArgs: ['--version'], style: 'semver', fileExtension: '.sh' },
  { name: 'python', binaries: ['python3', 'python'], versionArgs: ['--version'], style: 'semver', fileExtension: '.py' },
  { name: 'node', binaries: ['node', 'nodejs'], versionArgs: ['--version'], style: 'semver', fileExtension: '.js' },
  { name: 'ruby', binaries: ['ruby'], versionArgs: ['--version'], style: 'semver', fileExtension: '.rb' },
  { name: 'go', binaries: ['go'], versionArgs: ['version'], style: 'semver', fileExtension: '.go' },
  { name: 'java', binaries: ['java'], versionArgs: ['-version'], style: 'java', fileExtension: '.java' },
  { name: 'r', binaries: ['Rscript'], versionArgs: ['--version'], style: 'semver', fileExtension: '.R' },
  { name: 'perl', binaries: ['perl'], versionArgs: ['--version'], style: 'semver', fileExtension: '.pl' },
];
