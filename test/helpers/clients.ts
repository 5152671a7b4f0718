import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function has(command: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${command}`]);
    return true;
  } catch {
    return false;
  }
}

/**
 * The skip reason for suites that drive Debian's OpenStack clients, naming the packages to
 * install; false when both CLIs are present (CI installs them in .ci/run).
 */
export async function openstackClientsMissing(): Promise<string | false> {
  const missing = [];
  if (!(await has('openstack'))) missing.push('openstack (apt-get install python3-openstackclient)');
  if (!(await has('glance'))) missing.push('glance (apt-get install python3-glanceclient)');
  return missing.length > 0 ? `needs ${missing.join(' and ')}` : false;
}

/**
 * The skip reason for tests that read images as disks with QEMU's tools over HTTP; false when
 * qemu-img is there with its curl block driver (CI installs them in .ci/run).
 */
export async function qemuHttpMissing(): Promise<string | false> {
  if (!(await has('qemu-img'))) return 'needs qemu-img (apt-get install qemu-utils qemu-block-extra)';
  try {
    const { stdout } = await run('qemu-img', ['--help']);
    if (!/\bhttp\b/.test(stdout)) return 'needs QEMU\'s curl block driver (apt-get install qemu-block-extra)';
  } catch {
    return 'qemu-img --help failed';
  }
  return false;
}

/** The skip reason for the dashboard's browser tests; false when Debian's Chromium is there (CI installs it in .ci/run). */
export async function chromiumMissing(): Promise<string | false> {
  return (await has('chromium')) ? false : 'needs Chromium (apt-get install chromium)';
}
