import type { ChangeNotifier, CommitEvent } from '../../core/ports.ts';

/**
 * The change notifier of a database only one process opens (SQLite: the data directory's lock
 * makes it so): listeners are called as a commit is published.
 */
export class InProcessNotifier implements ChangeNotifier {
  readonly #listeners = new Set<(event: CommitEvent) => void>();

  async publish(event: CommitEvent): Promise<void> {
    for (const listener of [...this.#listeners]) listener(event);
  }

  subscribe(listener: (event: CommitEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => { this.#listeners.delete(listener); };
  }

  async close(): Promise<void> {
    this.#listeners.clear();
  }
}
