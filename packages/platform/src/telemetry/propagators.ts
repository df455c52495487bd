import type { Context, TextMapGetter, TextMapPropagator, TextMapSetter } from "@opentelemetry/api";
import { B3Propagator } from "@opentelemetry/propagator-b3";

/**
 * W3C trace context in and out, plus B3 (single `b3` or multi `x-b3-*` headers) accepted on input
 * only: Envoy sidecars emit B3, but what we send on is W3C `traceparent`/`tracestate`, which every
 * hop after us (and Jaeger) reads. When both arrive, W3C wins.
 */
export class InboundB3Propagator implements TextMapPropagator {
  readonly #w3c: TextMapPropagator;
  readonly #b3 = new B3Propagator();

  constructor(w3c: TextMapPropagator) {
    this.#w3c = w3c;
  }

  inject(ctx: Context, carrier: unknown, setter: TextMapSetter): void {
    this.#w3c.inject(ctx, carrier, setter);
  }

  extract(ctx: Context, carrier: unknown, getter: TextMapGetter): Context {
    // A valid traceparent wins, so B3 is only read without one (W3C returns `ctx` itself then).
    const w3c = this.#w3c.extract(ctx, carrier, getter);
    return w3c !== ctx ? w3c : this.#b3.extract(ctx, carrier, getter);
  }

  fields(): string[] {
    return this.#w3c.fields();
  }
}
