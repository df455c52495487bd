// Materializes the third-party .proto files that proto/ imports into .buf-deps/ (gitignored),
// from npm packages already installed, because the Buf Schema Registry is not reachable from
// every machine that builds taskmesh.
//
// - buf/validate/validate.proto: @bufbuild/protovalidate ships only its compiled descriptor, so
//   the file is printed back from that descriptor. The print keeps every message, field, number,
//   oneof and extension (all a dependent file's compilation and its descriptor need) and drops
//   comments and the rule library's own CEL options, which protovalidate reads at run time from
//   the full descriptor it embeds, not from ours.
// - grpc/health/v1 and grpc/reflection/v1: copied from grpc-health-check and @grpc/reflection.
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { isFieldSet } from "@bufbuild/protobuf";
import { FieldDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { file_buf_validate_validate } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, ".buf-deps");

const scalar = {
  1: "double",
  2: "float",
  3: "int64",
  4: "uint64",
  5: "int32",
  6: "fixed64",
  7: "fixed32",
  8: "bool",
  9: "string",
  12: "bytes",
  13: "uint32",
  15: "sfixed32",
  16: "sfixed64",
  17: "sint32",
  18: "sint64",
};
const MAX = 536870911;
// Descriptors are proto2: an unset oneof_index reads as 0, so presence must be asked for.
const oneofOf = (f) => (isFieldSet(f, FieldDescriptorProtoSchema.field.oneofIndex) ? f.oneofIndex : undefined);

function fieldType(f) {
  return f.type === 11 || f.type === 14 ? f.typeName : scalar[f.type];
}

function fieldLine(f, inOneof) {
  const label = inOneof ? "" : f.label === 3 ? "repeated " : f.label === 2 ? "required " : "optional ";
  const opts = [];
  if (f.options?.deprecated) opts.push("deprecated = true");
  if (f.options?.packed !== undefined && f.options.packed !== false) opts.push("packed = true");
  const suffix = opts.length ? ` [${opts.join(", ")}]` : "";
  return `${label}${fieldType(f)} ${f.name} = ${f.number}${suffix};`;
}

function range(start, endExclusive) {
  const end = endExclusive - 1;
  return start === end ? `${start}` : `${start} to ${end >= MAX ? "max" : end}`;
}

function printEnum(e, ind) {
  const lines = [`${ind}enum ${e.name} {`];
  for (const v of e.value) lines.push(`${ind}  ${v.name} = ${v.number};`);
  lines.push(`${ind}}`);
  return lines;
}

function printMessage(m, ind) {
  const lines = [`${ind}message ${m.name} {`];
  const inner = `${ind}  `;
  for (const n of m.nestedType) lines.push(...printMessage(n, inner));
  for (const e of m.enumType) lines.push(...printEnum(e, inner));
  m.oneofDecl.forEach((o, i) => {
    lines.push(`${inner}oneof ${o.name} {`);
    for (const f of m.field.filter((x) => oneofOf(x) === i)) lines.push(`${inner}  ${fieldLine(f, true)}`);
    lines.push(`${inner}}`);
  });
  for (const f of m.field.filter((x) => oneofOf(x) === undefined)) lines.push(`${inner}${fieldLine(f, false)}`);
  for (const r of m.extensionRange) lines.push(`${inner}extensions ${range(r.start, r.end)};`);
  for (const r of m.reservedRange) lines.push(`${inner}reserved ${range(r.start, r.end)};`);
  if (m.reservedName.length) lines.push(`${inner}reserved ${m.reservedName.map((n) => JSON.stringify(n)).join(", ")};`);
  lines.push(`${ind}}`);
  return lines;
}

function printFile(fd) {
  const lines = [
    "// Printed by scripts/buf-deps.mjs from the descriptor in @bufbuild/protovalidate. Do not edit.",
    `syntax = "${fd.syntax || "proto2"}";`,
    `package ${fd.package};`,
  ];
  for (const d of fd.dependency) lines.push(`import "${d}";`);
  for (const m of fd.messageType) lines.push(...printMessage(m, ""));
  for (const e of fd.enumType) lines.push(...printEnum(e, ""));
  const byExtendee = new Map();
  for (const x of fd.extension) byExtendee.set(x.extendee, [...(byExtendee.get(x.extendee) ?? []), x]);
  for (const [extendee, fields] of byExtendee) {
    lines.push(`extend ${extendee} {`);
    for (const f of fields) lines.push(`  ${fieldLine(f, false)}`);
    lines.push("}");
  }
  return `${lines.join("\n")}\n`;
}

function copy(pkgFile, dest) {
  const target = join(out, dest);
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(join(root, "node_modules", pkgFile), target);
}

mkdirSync(join(out, "buf/validate"), { recursive: true });
writeFileSync(join(out, "buf/validate/validate.proto"), printFile(file_buf_validate_validate.proto));
copy("grpc-health-check/proto/health/v1/health.proto", "grpc/health/v1/health.proto");
copy("@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto", "grpc/reflection/v1/reflection.proto");
copy(
  "@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto",
  "grpc/reflection/v1alpha/reflection.proto",
);
