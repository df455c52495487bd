import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { type ReminderInternalService, TimerKind, TimerSchema } from "@taskmesh/gen/taskmesh/reminders/v1/reminders_pb";
import { requireService } from "@taskmesh/platform";
import type { RemindersStore } from "./reminders-store.js";

/**
 * The mesh-only ReminderInternalService (service token): the user id comes from the request
 * because the callers are services (support tooling, tests), not end users.
 */
export function reminderInternalService(store: RemindersStore): ServiceImpl<typeof ReminderInternalService> {
  return {
    /** The user's timers that have not fired yet, earliest first (an unknown user has none). */
    async listSchedule(req, ctx) {
      requireService(ctx);
      const timers = store.pendingFor(req.userId.toLowerCase()).map((t) =>
        create(TimerSchema, {
          taskId: t.taskId,
          kind: t.kind === "due" ? TimerKind.DUE : TimerKind.REMINDER,
          fireTime: timestampFromMs(t.fireTime),
          offsetSeconds: BigInt(t.offsetSeconds),
        }),
      );
      return { timers };
    },
  };
}
