import { useQuery } from "@connectrpc/connect-query";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { BROWSER_ZONE, isValidZone } from "./time";

/** The user's time zone: their preference, else the browser's. */
export function useZone(): string {
  const me = useQuery(UserService.method.getMe, {}, { staleTime: 60_000 });
  const zone = me.data?.user?.preferences?.timeZone;
  return zone && isValidZone(zone) ? zone : BROWSER_ZONE;
}
