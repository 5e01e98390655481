/**
 * The watch side of `NetlinkKernel`: its listeners, the `ip monitor` child that
 * feeds them (`kernel-watch.ts`) and the filter that judges each line
 * (`change-filter.ts`). The child runs while anyone listens.
 *
 * What listeners hear: 'external' for someone else's change to a managed device
 * (and, once the child listens, when a listing made while it was starting or
 * dead may have missed one), 'own' once after each change of ours, 'overflow'
 * when the kernel dropped notifications. `NetlinkKernel` tells this module which
 * devices it manages and what it is changing through `filter`, and calls
 * `listed()` and `changed()` around its requests.
 */
import { Logger } from '../util/log';
import { ChangeFilter } from './change-filter';
import { ChangeCause } from './kernel';
import { KernelWatch } from './kernel-watch';

export interface ChangeWatchOptions {
  /** Where the watch logs that its `ip monitor` died or came back. */
  readonly log?: Logger;
  /** The iproute2 `ip` to run for the watch (tests point it elsewhere). */
  readonly ipCommand?: string;
}

export class ChangeWatch {
  /** Devices whose entries we list or change, and the changes we are making. */
  readonly filter = new ChangeFilter();
  private watcher: KernelWatch | undefined;
  /** True once the watch's child listens; a listing made before then may have missed a change. */
  private listening = false;
  private listedDeaf = false;
  private readonly listeners = new Set<(cause: ChangeCause) => void>();
  private closed = false;

  constructor(private readonly options: ChangeWatchOptions = {}) {}

  /** Adds a listener (starting the child for the first); returns its remover (stopping the child after the last). */
  subscribe(onChange: (cause: ChangeCause) => void): () => void {
    if (this.closed) return () => undefined;
    if (!this.watcher) this.openWatcher();
    const listener = (cause: ChangeCause): void => onChange(cause);
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.watcher) {
        this.watcher.close();
        this.watcher = undefined;
        this.listening = false;
      }
    };
  }

  /** True while the child has joined its groups: changes from now on are heard. */
  isListening(): boolean {
    return this.watcher !== undefined && this.listening;
  }

  /** A managed device's entries are being listed: if the child does not listen yet, re-list once it does. */
  listed(): void {
    if (this.watcher && !this.listening) this.listedDeaf = true;
  }

  /** One of our changes is complete: listeners hear 'own' once, after the current callbacks. */
  changed(): void {
    if (this.watcher) setImmediate(() => this.notify('own'));
  }

  /** Stops the child and forgets the listeners; later subscriptions are ignored. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.watcher?.close();
    this.watcher = undefined;
  }

  // `ip monitor link address route neigh` in a child process, each line judged by the filter.
  private openWatcher(): void {
    this.listening = false;
    this.listedDeaf = false;
    let restarted = false;
    this.watcher = new KernelWatch(
      {
        onChange: (change) => {
          const verdict = this.filter.classify(change, Date.now());
          if (verdict === 'external') this.notify('external');
        },
        onOverflow: () => this.notify('overflow'),
        onReady: () => {
          // Whatever happened while it was starting (or dead) may have been missed: re-list.
          if (restarted || this.listedDeaf) this.notify('external');
          restarted = true;
          this.listening = true;
          this.listedDeaf = false;
        },
        onDown: () => {
          this.listening = false;
        },
      },
      this.options.log,
      this.options.ipCommand,
    );
  }

  // Listener exceptions must not reach the package's native callback (that aborts).
  private notify(cause: ChangeCause): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(cause);
      } catch {
        // A watcher's own failure is its business; the socket must keep reading.
      }
    }
  }
}
