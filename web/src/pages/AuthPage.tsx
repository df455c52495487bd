import { useState } from "react";
import { FieldError, ProblemMessage } from "../components/FieldError";
import { useApp } from "../lib/app-context";
import { describeError, type Problem } from "../lib/errors";

export function AuthPage() {
  const { api, signIn, signedOutReason } = useApp();
  const [mode, setMode] = useState<"login" | "register">("login");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [problem, setProblem] = useState<Problem | undefined>();
  const [busy, setBusy] = useState(false);

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setProblem(undefined);
    try {
      if (mode === "register") await api.users.register({ email, password });
      signIn(await api.users.login({ email, password }));
    } catch (err) {
      const p = describeError(err);
      // A wrong password is UNAUTHENTICATED from Login: say it plainly.
      if (p.code === 16) p.message = "Wrong email or password.";
      setProblem(p);
    } finally {
      setBusy(false);
    }
  };

  const title = mode === "login" ? "Sign in" : "Create an account";
  return (
    <main id="main" className="narrow">
      <h1>{title}</h1>
      {signedOutReason && (
        <p role="status" className="notice">
          {signedOutReason}
        </p>
      )}
      <form onSubmit={submit} noValidate>
        <label htmlFor="email">Email</label>
        <input
          id="email"
          type="email"
          autoComplete="email"
          required
          value={email}
          onChange={(e) => setEmail(e.target.value)}
          aria-invalid={problem?.fields.email ? true : undefined}
          aria-describedby={problem?.fields.email ? "email-error" : undefined}
        />
        <FieldError id="email" message={problem?.fields.email} />
        <label htmlFor="password">Password</label>
        <input
          id="password"
          type="password"
          autoComplete={mode === "login" ? "current-password" : "new-password"}
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          aria-invalid={problem?.fields.password ? true : undefined}
          aria-describedby={
            problem?.fields.password ? "password-error" : mode === "register" ? "password-hint" : undefined
          }
        />
        {mode === "register" && (
          <p id="password-hint" className="hint">
            At least 8 characters.
          </p>
        )}
        <FieldError id="password" message={problem?.fields.password} />
        <ProblemMessage message={problem?.message} />
        <button type="submit" disabled={busy}>
          {busy ? "Please wait…" : title}
        </button>
      </form>
      <p>
        {mode === "login" ? "New here? " : "Have an account? "}
        <button
          type="button"
          className="link"
          onClick={() => {
            setMode(mode === "login" ? "register" : "login");
            setProblem(undefined);
          }}
        >
          {mode === "login" ? "Create an account" : "Sign in instead"}
        </button>
      </p>
    </main>
  );
}
