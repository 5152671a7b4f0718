/** What process.memoryUsage() said in the probed process, right after a full garbage collection. */
export interface MemoryAfterGc {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/** The environment that makes a Node process listen for an inspector on 127.0.0.1:`port` (0: a port of its choosing, printed). */
export function inspectEnv(port = 0): { NODE_OPTIONS: string } {
  return { NODE_OPTIONS: `--inspect=127.0.0.1:${port}` };
}

/**
 * The memory a process really holds: it forces a full garbage collection there and reads
 * process.memoryUsage(), through the inspector protocol (HeapProfiler.collectGarbage,
 * Runtime.evaluate) of a process started with inspectEnv(), so the product needs no debug route
 * or flag. Only the main thread is collected: what worker threads keep alive stays counted. For
 * tests and benchmarks.
 */
export class MemoryProbe {
  readonly #ws: WebSocket;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #nextId = 1;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.addEventListener('message', (ev) => {
      const m = JSON.parse(String(ev.data)) as { id?: number; result?: unknown; error?: { message: string } };
      const p = m.id === undefined ? undefined : this.#pending.get(m.id);
      if (p === undefined) return;
      this.#pending.delete(m.id!);
      if (m.error !== undefined) p.reject(new Error(`inspector: ${m.error.message}`));
      else p.resolve(m.result);
    });
    ws.addEventListener('close', () => {
      for (const p of this.#pending.values()) p.reject(new Error('inspector connection closed'));
      this.#pending.clear();
    });
  }

  /**
   * Connects to the inspector of a process started with inspectEnv(): on `port` if given, else
   * the one its "Debugger listening on ws://…" line in `output` (what it printed) names.
   */
  static async connect(at: { output: string } | { port: number }): Promise<MemoryProbe> {
    let url: string | undefined;
    if ('port' in at) {
      const targets = await (await fetch(`http://127.0.0.1:${at.port}/json/list`)).json() as { webSocketDebuggerUrl?: string }[];
      url = targets[0]?.webSocketDebuggerUrl;
    } else {
      url = /Debugger listening on (ws:\/\/127\.0\.0\.1:\d+\/\S+)/.exec(at.output)?.[1];
    }
    if (url === undefined) throw new Error('the process has no inspector listening on 127.0.0.1 (start it with inspectEnv())');
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve(), { once: true });
      ws.addEventListener('error', () => reject(new Error(`cannot connect to the inspector at ${url}`)), { once: true });
    });
    return new MemoryProbe(ws);
  }

  #send(method: string, params: object = {}, timeoutMs = 60_000): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`inspector: no answer to ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Two full collections (the second frees what the first's finalizers released), then process.memoryUsage(). */
  async measure(): Promise<MemoryAfterGc> {
    await this.#send('HeapProfiler.collectGarbage');
    await this.#send('HeapProfiler.collectGarbage');
    const r = await this.#send('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true }) as { result: { value: string } };
    return JSON.parse(r.result.value) as MemoryAfterGc;
  }

  close(): void {
    this.#ws.close();
  }
}
