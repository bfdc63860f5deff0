/**
 * A renderer the device delegates to (rutabaga's "component"): it owns the resources and the
 * contexts of its kind and answers the commands that concern them; its contexts are addressed by
 * ctx id (virglrenderer keeps all of them in one worker). The built-in 2D path stays inline in
 * GpuDevice: it is the hot path and an indirection per command would only cost there.
 */
import type { Codec } from '../queues/codec.js';
import type { VirtQueue } from '../queues/virtqueue.js';
import type { ContextResource } from './contexts.js';

export interface Renderer {
  /** Capsets offered: num_capsets in config space and the GET_CAPSET_INFO index space. */
  readonly capsets: readonly { readonly id: number }[];
  /**
   * Execute `type` if it belongs to this renderer: a response length, a promise of one, or a
   * deferred completion through `queue` (fences); null means "not mine", the device goes on.
   */
  execute(codec: Codec, type: number, queue: VirtQueue, contextInit: boolean): number | Promise<number> | null;
  /** A resource by id (throws GpuError 'resource'), for RESOURCE_ASSIGN_UUID. */
  resource(id: number): { uuid: Uint8Array | null };
  /** Whether this renderer owns resource `id` (the device's own blobs share the id space). */
  hasResource(id: number): boolean;
  /**
   * The device shows one of its own blobs on scanout `id`, or disables it: forget what this
   * renderer showed there without telling the display; whether it showed anything.
   */
  releaseScanout(id: number): boolean;
  /** Whether a context of this renderer has that id (the context registry mirrors them). */
  hasContext(id: number): boolean;
  /** A resource as a context of another type sees it when attached (throws GpuError 'resource'). */
  contextResource(id: number): ContextResource;
  /** UPDATE_CURSOR with one of this renderer's resources. */
  cursor(resourceId: number, scanout: number, x: number, y: number, hotX: number, hotY: number): void;
  /** The guest memory table changed (resolved backings must be resolved again). */
  memoryChanged(): void;
  /** Drop every resource and context (device reset, new driver, session end). */
  reset(): void;
}
