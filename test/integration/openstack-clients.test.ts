import { join } from 'node:path';
import { openstackClientsMissing } from '../helpers/clients.ts';
import { spawnServe } from '../helpers/site.ts';
import { openstackClientsSuite } from './openstack-clients-suite.ts';

openstackClientsSuite('outpost serve', await openstackClientsMissing(), async (work) => {
  const server = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'data')]);
  return { url: server.url, storeDir: join(work, 'data', 'stores', 'central'), stop: () => server.stop() };
});
