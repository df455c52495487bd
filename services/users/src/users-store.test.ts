import { tempDir } from "@taskmesh/platform/testing";
import { afterEach, describe, expect, it } from "vitest";
import { UsersStore } from "./users-store.js";

const dirs: { remove(): void }[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) d.remove();
});
function dbPath(): string {
  const d = tempDir("users-store-");
  dirs.push(d);
  return `${d.path}/users.db`;
}

describe("UsersStore", () => {
  it("stores email lower-cased and finds it whatever the case", () => {
    const store = UsersStore.open(dbPath());
    const a = store.createAccount("Ada.Lovelace@Example.COM", "scrypt$hash", new Date("2030-01-02T03:04:05Z"));
    expect(a.email).toBe("ada.lovelace@example.com");
    expect(store.findByEmail("ADA.LOVELACE@example.com")?.id).toBe(a.id);
    expect(store.findById(a.id)).toMatchObject({
      email: "ada.lovelace@example.com",
      passwordHash: "scrypt$hash",
      createTime: new Date("2030-01-02T03:04:05Z"),
      preferences: { timeZone: "", channels: [], quietHours: undefined, webhookUrl: "" },
    });
    store.close();
  });

  it("refuses a second account for the same email in another case", () => {
    const store = UsersStore.open(dbPath());
    store.createAccount("bob@example.com", "h1", new Date());
    expect(() => store.createAccount("BOB@example.com", "h2", new Date())).toThrow(
      expect.objectContaining({ code: "SQLITE_CONSTRAINT_UNIQUE" }),
    );
    expect(store.findByEmail("bob@example.com")?.passwordHash).toBe("h1");
    store.close();
  });

  it("replaces preferences and reads them back, including quiet hours and channels", () => {
    const store = UsersStore.open(dbPath());
    const a = store.createAccount("carol@example.com", "h", new Date());
    const prefs = {
      timeZone: "Europe/Paris",
      channels: [1, 3],
      quietHours: { startMinute: 1320, endMinute: 420 },
      webhookUrl: "https://hooks.example.com/x",
    };
    expect(store.updatePreferences(a.id, prefs, new Date())).toBe(true);
    expect(store.findById(a.id)?.preferences).toEqual(prefs);
    expect(store.updatePreferences(a.id, { ...prefs, quietHours: undefined }, new Date())).toBe(true);
    expect(store.findById(a.id)?.preferences.quietHours).toBeUndefined();
    expect(store.updatePreferences(crypto.randomUUID(), prefs, new Date())).toBe(false);
    store.close();
  });

  it("keeps a committed registration when the process dies without closing the database", () => {
    const path = dbPath();
    const first = UsersStore.open(path);
    const a = first.createAccount("dave@example.com", "h", new Date());
    // No close(), no checkpoint: the commit lives only in the WAL, as after a SIGKILL.
    const second = UsersStore.open(path);
    expect(second.findByEmail("dave@example.com")?.id).toBe(a.id);
    second.close();
    first.close();
  });
});
