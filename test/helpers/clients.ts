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
