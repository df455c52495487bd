import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { UserInternalService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { requireService } from "@taskmesh/platform";
import { toPreferences } from "./user-service.js";
import type { UsersStore } from "./users-store.js";

/** UserInternalService handlers: mesh-only, callable with a service token, never exposed at the edge. */
export function userInternalService(store: UsersStore): ServiceImpl<typeof UserInternalService> {
  return {
    getUserPreferences(req, ctx) {
      requireService(ctx);
      const account = store.findById(req.userId);
      // A disabled account is being deleted: nothing should be sent to it any more.
      if (!account || account.disabledAt) throw new ConnectError(`user ${req.userId} not found`, Code.NotFound);
      return { email: account.email, preferences: toPreferences(account.preferences) };
    },
  };
}
