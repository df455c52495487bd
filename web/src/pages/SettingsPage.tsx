import { createConnectQueryKey, useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import {
  type AccountDeletion,
  DeletionState,
  NotificationChannel,
  UserService,
} from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { useEffect, useState } from "react";
import { FieldError, ProblemMessage } from "../components/FieldError";
import { useApp } from "../lib/app-context";
import { describeError, type Problem } from "../lib/errors";
import { base64UrlBytes, deviceName, pushSupported, registerPushWorker } from "../lib/push";
import { BROWSER_ZONE, formatInstant, tsMs } from "../lib/time";
import { useZone } from "../lib/use-zone";

const CHANNELS = [
  { value: NotificationChannel.IN_APP, label: "In the app" },
  { value: NotificationChannel.EMAIL, label: "Email" },
  { value: NotificationChannel.WEBHOOK, label: "Webhook" },
  { value: NotificationChannel.PUSH, label: "Push to my devices" },
];

const pad = (n: number) => String(n).padStart(2, "0");
const toHHMM = (min: number) => `${pad(Math.floor(min / 60))}:${pad(min % 60)}`;
const fromHHMM = (v: string) => {
  const [h, m] = v.split(":").map(Number);
  return (h ?? 0) * 60 + (m ?? 0);
};

export function SettingsPage() {
  return (
    <section aria-labelledby="settings-h">
      <h1 id="settings-h" tabIndex={-1}>
        Settings
      </h1>
      <Preferences />
      <Sessions />
      <PushOnThisDevice />
      <DeleteAccount />
    </section>
  );
}

/** The caller's signed-in devices (ListSessions), each revocable; this device signs out with "Sign out". */
function Sessions() {
  const { api } = useApp();
  const queryClient = useQueryClient();
  const zone = useZone();
  const list = useQuery(UserService.method.listSessions, {});
  const [problem, setProblem] = useState<string | undefined>();
  const revoke = async (id: string) => {
    setProblem(undefined);
    try {
      await api.users.revokeSession({ sessionId: id });
    } catch (err) {
      setProblem(`Could not sign that device out: ${describeError(err).message}`);
    }
    await queryClient.invalidateQueries({
      queryKey: createConnectQueryKey({ schema: UserService.method.listSessions, cardinality: "finite" }),
    });
  };
  return (
    <section aria-labelledby="sessions-h">
      <h2 id="sessions-h">Signed-in devices</h2>
      {list.isPending && <p role="status">Loading…</p>}
      {list.error && <ProblemMessage message={`Could not load your sessions: ${describeError(list.error).message}`} />}
      <ProblemMessage message={problem} />
      <ul className="sessions" aria-label="Signed-in devices">
        {(list.data?.sessions ?? []).map((s) => {
          const used = tsMs(s.lastUseTime);
          return (
            <li key={s.id} data-session-id={s.id}>
              <div>
                <strong>{s.userAgent || "Unknown device"}</strong>
                {s.current && <span className="tag">this device</span>}
                <p className="hint">
                  {s.ipAddress || "unknown address"}
                  {used !== undefined && ` · last active ${formatInstant(used, zone)}`}
                </p>
              </div>
              {!s.current && (
                <button type="button" className="secondary" onClick={() => revoke(s.id)}>
                  Sign out<span className="sr-only"> {s.userAgent || "this device"}</span>
                </button>
              )}
            </li>
          );
        })}
      </ul>
    </section>
  );
}

function Preferences() {
  const { api } = useApp();
  const queryClient = useQueryClient();
  const me = useQuery(UserService.method.getMe, {});
  const prefs = me.data?.user?.preferences;
  const [zone, setZone] = useState("");
  const [channels, setChannels] = useState<NotificationChannel[]>([]);
  const [webhook, setWebhook] = useState("");
  const [quiet, setQuiet] = useState(false);
  const [quietStart, setQuietStart] = useState("22:00");
  const [quietEnd, setQuietEnd] = useState("07:00");
  const [problem, setProblem] = useState<Problem | undefined>();
  const [saved, setSaved] = useState(false);

  useEffect(() => {
    if (!me.data) return;
    setZone(prefs?.timeZone || BROWSER_ZONE);
    setChannels(prefs?.channels.length ? prefs.channels : [NotificationChannel.IN_APP]);
    setWebhook(prefs?.webhookUrl ?? "");
    const q = prefs?.quietHours;
    setQuiet(!!q && q.startMinute !== q.endMinute);
    if (q && q.startMinute !== q.endMinute) {
      setQuietStart(toHHMM(q.startMinute));
      setQuietEnd(toHHMM(q.endMinute));
    }
  }, [me.data, prefs]);

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    setProblem(undefined);
    setSaved(false);
    try {
      await api.users.updatePreferences({
        preferences: {
          timeZone: zone,
          channels,
          webhookUrl: webhook,
          ...(quiet ? { quietHours: { startMinute: fromHHMM(quietStart), endMinute: fromHHMM(quietEnd) } } : {}),
        },
      });
      setSaved(true);
      await queryClient.invalidateQueries({
        queryKey: createConnectQueryKey({ schema: UserService, cardinality: undefined }),
      });
    } catch (err) {
      setProblem(describeError(err));
    }
  };
  const f = problem?.fields ?? {};

  if (me.isPending) return <p>Loading preferences…</p>;
  if (me.isError) return <ProblemMessage message={describeError(me.error).message} />;
  return (
    <form onSubmit={submit} aria-labelledby="prefs-h" noValidate>
      <h2 id="prefs-h">Preferences</h2>
      <p className="hint">Signed in as {me.data.user?.email}.</p>
      <label htmlFor="pref-zone">Time zone</label>
      <input
        id="pref-zone"
        value={zone}
        onChange={(e) => setZone(e.target.value)}
        aria-invalid={f.time_zone ? true : undefined}
        aria-describedby={f.time_zone ? "pref-zone-error" : undefined}
      />
      <FieldError id="pref-zone" message={f.time_zone} />
      <fieldset>
        <legend>Notify me by</legend>
        {CHANNELS.map((c) => (
          <label key={c.value} className="day">
            <input
              type="checkbox"
              checked={channels.includes(c.value)}
              onChange={(e) =>
                setChannels(e.target.checked ? [...channels, c.value] : channels.filter((x) => x !== c.value))
              }
            />
            {c.label}
          </label>
        ))}
      </fieldset>
      <label htmlFor="pref-webhook">Webhook URL</label>
      <input
        id="pref-webhook"
        type="url"
        placeholder="https://example.com/hooks/taskmesh"
        value={webhook}
        onChange={(e) => setWebhook(e.target.value)}
        aria-invalid={f.webhook_url ? true : undefined}
        aria-describedby={f.webhook_url ? "pref-webhook-error" : undefined}
      />
      <FieldError id="pref-webhook" message={f.webhook_url} />
      <label className="day">
        <input type="checkbox" checked={quiet} onChange={(e) => setQuiet(e.target.checked)} /> Quiet hours (no email or
        webhook)
      </label>
      {quiet && (
        <div className="row">
          <div>
            <label htmlFor="quiet-start">From</label>
            <input id="quiet-start" type="time" value={quietStart} onChange={(e) => setQuietStart(e.target.value)} />
          </div>
          <div>
            <label htmlFor="quiet-end">Until</label>
            <input id="quiet-end" type="time" value={quietEnd} onChange={(e) => setQuietEnd(e.target.value)} />
          </div>
        </div>
      )}
      <ProblemMessage message={problem?.message} />
      {saved && <p role="status">Preferences saved.</p>}
      <button type="submit">Save preferences</button>
    </form>
  );
}

/**
 * "Enable push on this device": subscribes this browser with the VAPID key and registers the
 * subscription with notifications (and the reverse). Reminders arrive by push once "Push to my
 * devices" is also chosen above.
 */
function PushOnThisDevice() {
  const { api } = useApp();
  const supported = pushSupported();
  const [endpoint, setEndpoint] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | undefined>();
  const [done, setDone] = useState<string | undefined>();

  useEffect(() => {
    if (!supported) return;
    registerPushWorker()
      .then((reg) => reg?.pushManager.getSubscription())
      .then((sub) => setEndpoint(sub?.endpoint))
      .catch(() => {});
  }, [supported]);

  const enable = async () => {
    setBusy(true);
    setProblem(undefined);
    setDone(undefined);
    try {
      const permission = await Notification.requestPermission();
      if (permission !== "granted")
        throw new Error("notifications are blocked for this site; allow them in the browser's site settings");
      const reg = await registerPushWorker();
      if (!reg) throw new Error("this browser cannot receive push notifications");
      const { vapidPublicKey } = await api.notifications.getPushConfig({});
      let sub: PushSubscription;
      try {
        sub = await reg.pushManager.subscribe({
          userVisibleOnly: true,
          applicationServerKey: base64UrlBytes(vapidPublicKey),
        });
      } catch (err) {
        // e.g. AbortError "push service error" when the browser's push service is unreachable.
        throw new Error(`the browser's push service refused the subscription (${(err as Error).message})`);
      }
      const json = sub.toJSON();
      await api.notifications.registerPushSubscription({
        endpoint: sub.endpoint,
        p256dh: json.keys?.p256dh ?? "",
        auth: json.keys?.auth ?? "",
        deviceName: deviceName(),
      });
      setEndpoint(sub.endpoint);
      setDone("Push is on for this device.");
    } catch (err) {
      const message = err instanceof Error && !("code" in err) ? err.message : describeError(err).message;
      setProblem(`Could not turn on push on this device: ${message}.`);
    } finally {
      setBusy(false);
    }
  };

  const disable = async () => {
    setBusy(true);
    setProblem(undefined);
    setDone(undefined);
    try {
      const reg = await registerPushWorker();
      const sub = await reg?.pushManager.getSubscription();
      const mine = (await api.notifications.listPushSubscriptions({})).subscriptions.find(
        (s) => s.endpoint === (sub?.endpoint ?? endpoint),
      );
      if (mine) await api.notifications.deletePushSubscription({ subscriptionId: mine.id });
      await sub?.unsubscribe();
      setEndpoint(undefined);
      setDone("Push is off for this device.");
    } catch (err) {
      setProblem(`Could not turn off push on this device: ${describeError(err).message}.`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="push-h">
      <h2 id="push-h">Push notifications</h2>
      {!supported ? (
        <p className="hint">This browser cannot receive push notifications here (it needs HTTPS or localhost).</p>
      ) : (
        <>
          <p className="hint">
            {endpoint ? "This device receives push notifications." : "This device does not receive push notifications."}{" "}
            Choose "Push to my devices" above for reminders to arrive by push.
          </p>
          {endpoint ? (
            <button type="button" className="secondary" onClick={disable} disabled={busy}>
              Disable push on this device
            </button>
          ) : (
            <button type="button" onClick={enable} disabled={busy}>
              Enable push on this device
            </button>
          )}
        </>
      )}
      <ProblemMessage message={problem} />
      {done && <p role="status">{done}</p>}
    </section>
  );
}

const STATE_TEXT: Record<number, string> = {
  [DeletionState.RUNNING]: "in progress",
  [DeletionState.COMPLETED]: "done",
  [DeletionState.COMPENSATED]: "stopped and undone",
};

/** DeleteAccount starts the users service's saga; its progress is polled until it ends. */
function DeleteAccount() {
  const { api, signOut } = useApp();
  const [password, setPassword] = useState("");
  const [confirming, setConfirming] = useState(false);
  const [deletion, setDeletion] = useState<AccountDeletion | undefined>();
  const [steps, setSteps] = useState<string[]>([]);
  const [problem, setProblem] = useState<Problem | undefined>();

  const start = async (e: React.FormEvent) => {
    e.preventDefault();
    if (!confirming) {
      setConfirming(true);
      return;
    }
    setProblem(undefined);
    try {
      const res = await api.users.deleteAccount({ password });
      let d = res.deletion;
      while (d) {
        const cur = d;
        setDeletion(cur);
        if (cur.step) setSteps((s) => (s.at(-1) === cur.step ? s : [...s, cur.step]));
        if (cur.state === DeletionState.COMPLETED) {
          await new Promise((r) => setTimeout(r, 800));
          signOut("Your account and all its data were deleted.");
          return;
        }
        if (cur.state === DeletionState.COMPENSATED) return;
        await new Promise((r) => setTimeout(r, 400));
        d = (await api.users.getAccountDeletion({ deletionId: cur.id })).deletion;
      }
    } catch (err) {
      const p = describeError(err);
      if (p.code === 16 && !deletion) p.message = "Wrong password.";
      setProblem(p);
    }
  };

  return (
    <form onSubmit={start} aria-labelledby="delete-h" className="danger-zone" noValidate>
      <h2 id="delete-h">Delete account</h2>
      <p>This deletes your account, tasks, reminders and notifications everywhere. It cannot be undone.</p>
      <label htmlFor="delete-password">Your password</label>
      <input
        id="delete-password"
        type="password"
        autoComplete="current-password"
        value={password}
        onChange={(e) => setPassword(e.target.value)}
        aria-invalid={problem ? true : undefined}
        aria-describedby={problem?.fields.password ? "delete-password-error" : undefined}
      />
      <FieldError id="delete-password" message={problem?.fields.password} />
      <ProblemMessage message={problem?.message} />
      {deletion && (
        <div role="status" data-testid="deletion-progress">
          <p>
            Deletion {STATE_TEXT[deletion.state] ?? "starting"}
            {deletion.step ? ` — step: ${deletion.step}` : ""}
            {deletion.reason ? ` (${deletion.reason})` : ""}
          </p>
          <ol>
            {steps.map((s) => (
              <li key={s}>{s}</li>
            ))}
          </ol>
        </div>
      )}
      <button type="submit" className="danger" disabled={!password || deletion?.state === DeletionState.RUNNING}>
        {confirming ? "Yes, delete my account for good" : "Delete my account"}
      </button>
      {confirming && !deletion && (
        <button type="button" className="secondary" onClick={() => setConfirming(false)}>
          Keep my account
        </button>
      )}
    </form>
  );
}
