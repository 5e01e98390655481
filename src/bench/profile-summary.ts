/**
 * `node dist/bench/profile-summary.js FILE.cpuprofile [FROM_US TO_US]`: prints
 * what a profiled daemon spent its CPU on (cpu-profile.ts), e.g. the idle
 * profile the bench keeps beside its results file.
 */
import { readFileSync } from 'node:fs';
import { CpuProfile, renderProfileSummary, summarizeProfile } from './cpu-profile';

const [file, from, to] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: node dist/bench/profile-summary.js FILE.cpuprofile [FROM_US TO_US]\n');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
process.stdout.write(`${renderProfileSummary(summarizeProfile(profile, from ? Number(from) : undefined, to ? Number(to) : undefined))}\n`);
