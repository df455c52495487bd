import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Label, LabelSchema, type Project, ProjectSchema } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";

/** A project as stored. Times are epoch milliseconds. */
export interface ProjectRecord {
  id: string;
  userId: string;
  name: string;
  inbox: boolean;
  archived: boolean;
  rank: string;
  createTime: number;
  updateTime: number;
  version: number;
}

/** A label as stored. */
export interface LabelRecord {
  id: string;
  userId: string;
  name: string;
  createTime: number;
  updateTime: number;
  version: number;
}

/** Name of every user's Inbox project. */
export const INBOX_NAME = "Inbox";

export function toProject(p: ProjectRecord): Project {
  return create(ProjectSchema, {
    id: p.id,
    userId: p.userId,
    name: p.name,
    inbox: p.inbox,
    archived: p.archived,
    rank: p.rank,
    createTime: timestampFromMs(p.createTime),
    updateTime: timestampFromMs(p.updateTime),
    version: BigInt(p.version),
  });
}

export function toLabel(l: LabelRecord): Label {
  return create(LabelSchema, {
    id: l.id,
    userId: l.userId,
    name: l.name,
    createTime: timestampFromMs(l.createTime),
    updateTime: timestampFromMs(l.updateTime),
    version: BigInt(l.version),
  });
}
