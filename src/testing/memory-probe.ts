/** What process.memoryUsage() said in the probed process, right after a full garbage collection. */
export interface MemoryAfterGc {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/** The environment that makes a Node process listen for an inspector on a loopback port of its choosing. */
export const INSPECT_ENV = { NODE_OPTIONS: '--inspect=127.0.0.1:0' } as const;

/**
 * The memory a process really holds: it forces a full garbage collection there and reads
 * process.memoryUsage(), through the inspector protocol (HeapProfiler.collectGarbage,
 * Runtime.evaluate) of a process started with INSPECT_ENV, so the product needs no debug route
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

  /** Connects to the inspector whose "Debugger listening on ws://…" line is in `output` (what the process printed). */
  static async connect(output: string): Promise<MemoryProbe> {
    const m = /Debugger listening on (ws:\/\/127\.0\.0\.1:\d+\/\S+)/.exec(output);
    if (m === null) throw new Error('the process has no inspector listening on 127.0.0.1 (start it with INSPECT_ENV)');
    const ws = new WebSocket(m[1]);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve(), { once: true });
      ws.addEventListener('error', () => reject(new Error(`cannot connect to the inspector at ${m[1]}`)), { once: true });
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
