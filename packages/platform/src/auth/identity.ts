import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";
import { decodeJwt } from "jose";

/** Who is calling, as established from a verified credential (never from a request field). */
export type Principal =
  | { kind: "user"; userId: string; token: string }
  | { kind: "service"; name: string }
  | { kind: "anonymous" };

export const principalKey = createContextKey<Principal>({ kind: "anonymous" }, { description: "caller principal" });

/** The authenticated user's id, or UNAUTHENTICATED. Every per-user query starts here. */
export function requireUser(ctx: HandlerContext): { userId: string; token: string } {
  const p = ctx.values.get(principalKey);
  if (p.kind !== "user") throw new ConnectError("a valid user token is required", Code.Unauthenticated);
  return { userId: p.userId, token: p.token };
}

/**
 * The authenticated user's email (the `email` claim the users service puts in access tokens),
 * lower-cased, or "" when the token has none. Read from the token the server already verified
 * (the principal is set only after verification), so decoding without checking again is safe. A
 * changed email applies from the user's next token.
 */
export function userEmail(ctx: HandlerContext): string {
  const { token } = requireUser(ctx);
  const email = decodeJwt(token).email;
  return typeof email === "string" ? email.toLowerCase() : "";
}

/** The calling service's name, or UNAUTHENTICATED. Internal services start here. */
export function requireService(ctx: HandlerContext): string {
  const p = ctx.values.get(principalKey);
  if (p.kind !== "service") throw new ConnectError("a valid service token is required", Code.Unauthenticated);
  return p.name;
}

/** `authorization: Bearer <token>` → token, or undefined when absent. Malformed is UNAUTHENTICATED. */
export function bearerToken(headers: Headers): string | undefined {
  const value = headers.get("authorization");
  if (value === null) return undefined;
  const m = /^Bearer ([A-Za-z0-9_\-.]{1,8192})$/.exec(value);
  if (!m?.[1]) throw new ConnectError("authorization header must be 'Bearer <token>'", Code.Unauthenticated);
  return m[1];
}
