/**
 * The suite runs in a private network namespace (scripts/test.sh). The few tests
 * that need the machine's own namespaces (dockerd for the container e2e, the npm
 * registry for the install script) run their command through this prefix:
 * `nsenter` into the namespaces of scripts/test.sh's own shell (FLTS_HOST_PID).
 * Such a command must change nothing in those namespaces itself.
 */
export function inHostNamespaces(namespaces: readonly ('net' | 'mount')[]): string[] {
  const hostPid = process.env.FLTS_HOST_PID;
  if (hostPid) return ['nsenter', `--target=${hostPid}`, ...namespaces.map((n) => `--${n}`), '--'];
  if (process.env.FLTS_SUITE_NETNS) {
    throw new Error("FLTS_HOST_PID is not set: this scripts/test.sh does not say where the machine's own namespaces are");
  }
  return []; // not run by scripts/test.sh: already in the machine's namespaces
}
