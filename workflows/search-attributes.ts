// Search attribute keys, named once: workflows upsert them, the dev server registers them, and
// Temporal Web filters on them ("all failed rotations of pedro-ops").
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const ClusterName = defineSearchAttributeKey('ClusterName', SearchAttributeType.KEYWORD);
export const Operation = defineSearchAttributeKey('Operation', SearchAttributeType.KEYWORD);
export const Phase = defineSearchAttributeKey('Phase', SearchAttributeType.KEYWORD);
export const State = defineSearchAttributeKey('State', SearchAttributeType.KEYWORD);
export const DrillResult = defineSearchAttributeKey('DrillResult', SearchAttributeType.KEYWORD);
export const RtoSeconds = defineSearchAttributeKey('RtoSeconds', SearchAttributeType.INT);
export const RequestedBy = defineSearchAttributeKey('RequestedBy', SearchAttributeType.KEYWORD);
/** On a drill: how many scheduled drills its schedule skipped (overlap SKIP) while it ran. */
export const DrillsSkipped = defineSearchAttributeKey('DrillsSkipped', SearchAttributeType.INT);
/** On a drift check: how many findings it reported (0 = the cluster is as the config says). */
export const DriftCount = defineSearchAttributeKey('DriftCount', SearchAttributeType.INT);

/** name -> type as `temporal server start-dev --search-attribute NAME=TYPE` and the operator API want it. */
export const SEARCH_ATTRIBUTE_TYPES: Record<string, 'Keyword' | 'Int'> = {
  ClusterName: 'Keyword',
  Operation: 'Keyword',
  Phase: 'Keyword',
  State: 'Keyword',
  DrillResult: 'Keyword',
  RtoSeconds: 'Int',
  RequestedBy: 'Keyword',
  DrillsSkipped: 'Int',
  DriftCount: 'Int',
};
