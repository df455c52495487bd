/** Just enough of the Dockerfile and .dockerignore formats to check taskmesh's images offline. */

export interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

export interface Stage {
  name: string;
  from: string;
  instructions: Instruction[];
}

export interface ParsedDockerfile {
  /** ARGs declared before the first FROM, with their defaults. */
  globalArgs: Map<string, string>;
  stages: Stage[];
}

/** Instructions with `\` continuations joined and comments dropped. */
export function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let buffer = "";
  let start = 0;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (buffer === "" && (line === "" || line.startsWith("#"))) return;
    if (buffer === "") start = i + 1;
    if (line.endsWith("\\")) {
      buffer += `${line.slice(0, -1)} `;
      return;
    }
    buffer += line;
    const m = /^(\w+)\s+(.*)$/s.exec(buffer);
    if (!m) throw new Error(`line ${start}: cannot parse "${buffer}"`);
    out.push({ keyword: (m[1] as string).toUpperCase(), args: (m[2] as string).trim(), line: start });
    buffer = "";
  });
  if (buffer !== "") throw new Error("Dockerfile ends inside a continued line");
  return out;
}

export function parseDockerfile(text: string): ParsedDockerfile {
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of instructions(text)) {
    if (ins.keyword === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`line ${ins.line}: bad FROM ${ins.args}`);
      const from = (m[1] as string).replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => globalArgs.get(a ?? b) ?? "");
      stages.push({ name: m[2] ?? String(stages.length), from, instructions: [] });
    } else if (stages.length === 0) {
      if (ins.keyword !== "ARG") throw new Error(`line ${ins.line}: ${ins.keyword} before the first FROM`);
      const [name = "", value = ""] = ins.args.split("=", 2);
      globalArgs.set(name, value);
    } else {
      stages[stages.length - 1]?.instructions.push(ins);
    }
  }
  return { globalArgs, stages };
}

/** The source paths of a COPY (flags such as --from/--chown removed, destination dropped). */
export function copySources(args: string): { from?: string; sources: string[] } {
  const words = args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith("--"));
  const rest = words.filter((w) => !w.startsWith("--"));
  const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
  return { ...(from ? { from } : {}), sources: rest.slice(0, -1) };
}

/** .dockerignore semantics (Go filepath.Match plus `**`, later `!` lines re-include). */
export function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const pattern = (negate ? l.slice(1) : l).replace(/^\/+|\/+$/g, "");
      const re = pattern
        .split("/")
        .map((seg) =>
          seg === "**"
            ? "(?:.*)"
            : seg
                .replace(/[.+^${}()|[\]\\]/g, "\\$&")
                .replace(/\*/g, "[^/]*")
                .replace(/\?/g, "[^/]"),
        )
        .join("/")
        .replace(/\(\?:\.\*\)\//g, "(?:.*/)?");
      return { negate, regex: new RegExp(`^${re}$`) };
    });
  return (path: string) => {
    const parts = path.replace(/^\.\//, "").split("/");
    // A path is excluded when it, or a directory above it, matches.
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
    let excluded = false;
    for (const rule of rules) if (prefixes.some((p) => rule.regex.test(p))) excluded = !rule.negate;
    return excluded;
  };
}
