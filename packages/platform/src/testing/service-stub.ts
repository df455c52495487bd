import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";

/**
 * A whole implementation of `service` for a test double: the methods in `impl`, and every other
 * method either refused with UNIMPLEMENTED ("unimplemented", the default) or answering an empty
 * message (a stream with no message) ("empty"). A double then names only what its test uses, and
 * a method added to the contract touches no double.
 */
export function stubService<S extends DescService>(
  service: S,
  impl: Partial<ServiceImpl<S>>,
  otherwise: "unimplemented" | "empty" = "unimplemented",
): ServiceImpl<S> {
  const out: Record<string, unknown> = {};
  for (const m of service.methods) {
    const given = (impl as Record<string, unknown>)[m.localName];
    if (given) out[m.localName] = given;
    else if (otherwise === "empty")
      out[m.localName] = m.methodKind === "server_streaming" ? async function* () {} : () => ({});
    else
      out[m.localName] = () => {
        throw new ConnectError(`${service.typeName}/${m.name} is not part of this test double`, Code.Unimplemented);
      };
  }
  return out as ServiceImpl<S>;
}
