import { connect } from 'node:net';

/**
 * Sends `data` on a raw connection and half-closes it (socket.end()): once the server's first
 * answer has begun to arrive when `halfCloseAfterAnswer`, else as soon as `data` is written.
 * Returns everything the server sent until it closed the connection (failing after 10 s).
 */
export function exchange(url: string, data: string, halfCloseAfterAnswer = false): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let received = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server did not close the connection within 10 s; it sent: ${JSON.stringify(received)}`));
    }, 10_000);
    socket.on('data', (d) => {
      received += d.toString('latin1');
      if (halfCloseAfterAnswer && /\r\n\r\n/.test(received)) socket.end();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(received);
    });
    socket.write(data, () => { if (!halfCloseAfterAnswer) socket.end(); });
  });
}

/** The status lines of every HTTP response in `received`. */
export function statusLines(received: string): string[] {
  return received.match(/HTTP\/1\.1 \d{3} [^\r\n]*/g) ?? [];
}
