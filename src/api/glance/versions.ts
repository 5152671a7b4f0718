/**
 * The version document of glance/api/versions.py. Every entry links to the same /v2/ endpoint;
 * the list is what Outpost implements (v2.15 adds GET /v2/info/stores/detail, v2.17 the locations
 * API: POST and GET /v2/images/{id}/locations). As in Glance, the cache API's versions (2.14, 2.16
 * with its status-code fixes, and 2.18 with POST /v2/cache/clean and /v2/cache/prune) are listed
 * only where a cache is enabled ("if CONF.image_cache_dir"), 2.18 then CURRENT — every Outpost
 * site keeps one, central included; glanceclient's cache commands look for them.
 */
const VERSIONS = ['2.17', '2.15', '2.13', '2.12', '2.11', '2.10', '2.9', '2.8', '2.7', '2.6', '2.5', '2.4', '2.3', '2.2', '2.1', '2.0'];
const CACHE_VERSIONS = ['2.18', '2.17', '2.16', '2.15', '2.14', ...VERSIONS.slice(2)];

export function versionsDocument(baseUrl: string, cache: boolean): { versions: unknown[] } {
  return {
    versions: (cache ? CACHE_VERSIONS : VERSIONS).map((v, i) => ({
      id: `v${v}`,
      status: i === 0 ? 'CURRENT' : 'SUPPORTED',
      links: [{ rel: 'self', href: `${baseUrl}/v2/` }],
    })),
  };
}

/** `/v2.N/...` (an advertised N) is the same as `/v2/...` (version negotiation middleware). */
export function negotiateVersionPath(url: string): string {
  const m = /^\/v2\.(\d+)(\/.*)?$/.exec(url.split('?')[0]);
  if (m === null || !CACHE_VERSIONS.includes(`2.${m[1]}`)) return url;
  return `/v2${url.slice(`/v2.${m[1]}`.length)}`;
}
