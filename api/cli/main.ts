// `pedro-ops`: the operator's terminal front end. It talks only to the API (URL and token from flags
// or env), follows running workflows live over SSE, exits non-zero with the reason on failure, and
// with --json prints machine-readable output only.
import { parseArgs } from 'node:util';
import type { ProgressEvent } from '../../workflows/messages.js';
import { api, ApiError, defaultToken, followEvents, type ApiOptions } from './http.js';
import { ProgressView, resultOk } from './render.js';
import { driftView } from './drift-view.js';
import { planView, reportView, resolveHint, runsView, statusView, table } from './views.js';

const USAGE = `usage: pedro-ops <command> [args] [--url URL] [--token TOKEN] [--json] [--no-follow]

  help, --help                               this text
  clusters                                   list clusters
  provision <cluster> [--dry-run] [--allow-tofu]   --dry-run: the plan as a phase tree with the critical path
  upgrade <cluster> [--dry-run]                     rolling upgrade of k3s and the charts to the config; --dry-run: the plan
  status <workflow-id>                       a run's steps (state, attempts, duration, error); follows it unless --no-follow
  runs [cluster] [--state STATE] [--limit N] runs from Temporal visibility; STATE: needs-attention, running,
                                             waiting-approval, succeeded, partial, failed, cancelled, completed
  resolve <workflow-id> <step> retry|skip|abort [--note TEXT]   resolve a parked step of any run
  resolve-step <cluster> <step> retry|skip|abort [--note TEXT]  the same for the cluster's provision run
  rotate <cluster> [--entry ID ...] [--generate] [--rollout-timeout SECONDS] [--dry-run]
                                             --dry-run: compare 1Password, OpenBAO and Kubernetes only
  drift <cluster> [--latest]                 check the whole cluster against its config now (--latest: the
                                             last report); a diff grouped by node and component; changes nothing
  reconcile <cluster>                        plan the repair of the drift; prints the plan to approve
  reconcile-approve <cluster> <drift-id> [--note TEXT]   approve that plan (refused if the drift changed)
  reconcile-reject <cluster> [--note TEXT]
  verify-backup <cluster> [--backup NAME | --create-new] [--namespace NS ...]
  dr-restore <cluster> --backup NAME --namespace NS ... [--force]
  recover-control-plane <cluster> [--node NAME] [--snapshot NAME]   plan a restore of the k3s server from S3
  approve <cluster> <restore-id> [--control-plane] [--note TEXT]   (--control-plane: a control-plane recovery)
  reject <cluster> <restore-id> [--control-plane] [--note TEXT]
  schedules list <cluster>
  schedules pause|unpause <cluster> <schedule-id> [--note TEXT]
  schedules trigger <cluster> <schedule-id>
  schedules backfill <cluster> <schedule-id> --start ISO --end ISO

env: PEDRO_OPS_API_URL (default http://127.0.0.1:3000), PEDRO_OPS_API_TOKEN (default: the dev operator token)
exit codes: 0 success, 1 failed run or API error, 2 usage, 3 a step needs attention`;

const parsed = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        json: { type: 'boolean', default: false },
        'no-follow': { type: 'boolean', default: false },
        'dry-run': { type: 'boolean', default: false },
        'allow-tofu': { type: 'boolean', default: false },
        'create-new': { type: 'boolean', default: false },
        generate: { type: 'boolean', default: false },
        force: { type: 'boolean', default: false },
        entry: { type: 'string', multiple: true },
        'rollout-timeout': { type: 'string' },
        namespace: { type: 'string', multiple: true },
        backup: { type: 'string' },
        node: { type: 'string' },
        snapshot: { type: 'string' },
        'control-plane': { type: 'boolean', default: false },
        note: { type: 'string' },
        start: { type: 'string' },
        end: { type: 'string' },
        state: { type: 'string' },
        limit: { type: 'string' },
        latest: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}\n`);
    process.exit(2);
  }
})();
const { values: flags, positionals } = parsed;

const opts: ApiOptions = {
  url: flags.url ?? process.env.PEDRO_OPS_API_URL ?? 'http://127.0.0.1:3000',
  token: flags.token ?? defaultToken(),
};
const json = flags.json;
const enc = encodeURIComponent;

/** Polls a run-status URL until the run ends; its report, or exit 1 with the failure. */
async function waitReport(path: string): Promise<Record<string, unknown>> {
  for (;;) {
    const s = await api<{ running: boolean; report?: Record<string, unknown>; error?: { message?: string } }>(
      opts,
      'GET',
      path,
    );
    if (!s.running) {
      if (s.report) return s.report;
      process.stderr.write(`FAILED: ${s.error?.message ?? 'the check did not complete'}\n`);
      process.exit(1);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

function reconcileView(cluster: string, s: { running: boolean; report?: unknown; progress?: unknown }): string {
  const rep = s.report as { result?: string } | undefined;
  if (!s.running) return `reconcile of ${cluster}: ${rep?.result ?? 'ended'}`;
  const steps = (s.progress as { steps?: { id: string; state: string; detail?: string }[] }).steps ?? [];
  const approval = steps.filter((x) => x.id.startsWith('approval-') && x.state === 'pending').at(-1);
  return `reconcile of ${cluster} waits for approval:\n  ${approval?.detail ?? '(plan in GET /clusters/' + cluster + '/reconcile)'}\napprove with: pedro-ops reconcile-approve ${cluster} <drift-id from the plan>`;
}

function print(value: unknown, human?: () => void): void {
  if (json || !human) process.stdout.write(`${JSON.stringify(value, null, json ? 0 : 2)}\n`);
  else human();
}

function usage(msg?: string): never {
  if (msg) process.stderr.write(`${msg}\n\n`);
  process.stderr.write(`${USAGE}\n`);
  process.exit(2);
}

/** Follows a started workflow to its end; returns the exit code. */
async function follow(workflowId: string, started?: Record<string, unknown>): Promise<number> {
  if (!json && typeof started?.temporalWebUrl === 'string')
    process.stderr.write(`workflow ${workflowId}\nTemporal Web: ${started.temporalWebUrl}\n`);
  if (flags['no-follow']) {
    const s = started ?? { workflowId };
    print(s, () => process.stdout.write(`${reportView(s)}\n`));
    return 0;
  }
  const view = new ProgressView(json ? undefined : process.stderr);
  // Attaching to a run replays its transition log first: a needs-attention in that replay only
  // counts if the run is still stuck now.
  type Now = { progress?: { seq: number; state: string } };
  const now = await api<Now>(opts, 'GET', `/workflows/${enc(workflowId)}`).catch((): Now => ({}));
  const replayedUpTo = now.progress?.seq ?? 0;
  const stuckNow = now.progress?.state === 'needs-attention';
  for await (const msg of followEvents(opts, workflowId)) {
    if (msg.event === 'result') {
      const r = msg.data as { status: string; result?: unknown; error?: string };
      const ok = r.status === 'COMPLETED' && resultOk(r.result);
      print({ workflowId, ...r }, () => {
        process.stdout.write(`${reportView(r.result ?? r)}\n`);
        if (!ok)
          process.stderr.write(
            `FAILED: ${r.error ?? (r.result as { state?: string; result?: string })?.state ?? (r.result as { result?: string })?.result ?? r.status}\n`,
          );
      });
      return ok ? 0 : 1;
    }
    const e = msg.data as ProgressEvent;
    view.apply(e);
    const live = e.seq > replayedUpTo;
    const stuck =
      (live && e.kind === 'run' && e.state === 'needs-attention') || (!live && e.seq === replayedUpTo && stuckNow);
    if (stuck) {
      const steps = view.attention();
      if (json) print({ workflowId, state: 'needs-attention', steps });
      else
        process.stderr.write(
          `NEEDS ATTENTION: ${steps.map((x) => `${x.step}${x.error ? ` (${x.error})` : ''}`).join(', ') || 'a step'}\n` +
            `resolve with:\n${(steps.length ? steps : [{ step: '<step>' }]).map((x) => `  ${resolveHint(workflowId, x.step)}\n`).join('')}`,
        );
      return 3;
    }
  }
  return 1;
}

async function main(): Promise<number> {
  const [cmd, ...args] = positionals;
  if (flags.help || cmd === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!cmd) usage();
  switch (cmd) {
    case 'clusters': {
      const r = await api<{
        clusters: { name: string; vip: string; nodes: unknown[]; k3sVersion: string; lab: boolean }[];
      }>(opts, 'GET', '/clusters');
      print(r, () =>
        r.clusters.forEach((c) =>
          process.stdout.write(
            `${c.name.padEnd(16)} vip ${c.vip.padEnd(16)} ${c.nodes.length} nodes  k3s ${c.k3sVersion}${c.lab ? '  (lab)' : ''}\n`,
          ),
        ),
      );
      return 0;
    }
    case 'provision': {
      const [cluster] = args;
      if (!cluster) usage('provision needs a cluster');
      if (flags['dry-run']) {
        const plan = await api<Parameters<typeof planView>[0]>(
          opts,
          'POST',
          `/clusters/${enc(cluster)}/provision?dryRun=true`,
          {},
        );
        print(plan, () => process.stdout.write(`${planView(plan)}\n`));
        return 0;
      }
      const r = await startOrAttach(`/clusters/${enc(cluster)}/provision`, {
        ...(flags['allow-tofu'] ? { allowTofu: true } : {}),
      });
      return follow(String(r.workflowId), r);
    }
    case 'upgrade': {
      const [cluster] = args;
      if (!cluster) usage('upgrade needs a cluster');
      if (flags['dry-run']) {
        const plan = await api<{ targetVersion: string; snapshotName: string; batches: string[][]; charts: string[] }>(
          opts,
          'POST',
          `/clusters/${enc(cluster)}/upgrade?dryRun=true`,
          {},
        );
        print(plan, () =>
          process.stdout.write(
            `upgrade ${cluster} to ${plan.targetVersion}\n  etcd snapshot ${plan.snapshotName}\n${plan.batches
              .map((b, i) => `  ${i + 1}. ${b.join(', ')}: cordon, drain, install, wait Ready, uncordon`)
              .join('\n')}\n  charts: ${plan.charts.join(' → ')}\n`,
          ),
        );
        return 0;
      }
      const r = await startOrAttach(`/clusters/${enc(cluster)}/upgrade`, {});
      return follow(String(r.workflowId), r);
    }
    case 'status': {
      const [id] = args;
      if (!id) usage('status needs a workflow id');
      const r = await api<Parameters<typeof statusView>[0] & Record<string, unknown>>(
        opts,
        'GET',
        `/workflows/${enc(id)}`,
      );
      if (r.status === 'RUNNING' && !flags['no-follow']) return follow(id, r);
      print(r, () => process.stdout.write(`${statusView(r)}\n`));
      return r.status === 'RUNNING' || (r.status === 'COMPLETED' && resultOk(r.result)) ? 0 : 1;
    }
    case 'runs': {
      const [cluster] = args;
      const query = new URLSearchParams();
      if (flags.state) query.set('state', flags.state);
      if (flags.limit) query.set('limit', flags.limit);
      const path = `${cluster ? `/clusters/${enc(cluster)}/runs` : '/workflows'}${query.size ? `?${query.toString()}` : ''}`;
      const r = await api<{ runs: Parameters<typeof runsView>[0] }>(opts, 'GET', path);
      print(r, () => process.stdout.write(`${runsView(r.runs)}\n`));
      return 0;
    }
    case 'resolve': {
      const [id, step, action] = args;
      if (!id || !step || !['retry', 'skip', 'abort'].includes(action))
        usage('resolve needs <workflow-id> <step> retry|skip|abort');
      const r = await api(opts, 'POST', `/workflows/${enc(id)}/steps/${enc(step)}`, {
        action,
        ...(flags.note ? { note: flags.note } : {}),
      });
      print(r, () =>
        process.stdout.write(
          `${id} ${step}: ${action} accepted${flags['no-follow'] ? '' : '; follow with: pedro-ops status ' + id}\n`,
        ),
      );
      return 0;
    }
    case 'resolve-step': {
      const [cluster, step, action] = args;
      if (!cluster || !step || !['retry', 'skip', 'abort'].includes(action))
        usage('resolve-step needs <cluster> <step> retry|skip|abort');
      const r = await api(opts, 'POST', `/clusters/${enc(cluster)}/provision/steps/${enc(step)}`, {
        action,
        ...(flags.note ? { note: flags.note } : {}),
      });
      print(r, () => process.stdout.write(`provision/${cluster} ${step}: ${action} accepted\n`));
      return 0;
    }
    case 'drift': {
      const [cluster] = args;
      if (!cluster) usage('drift needs a cluster');
      const path = `/clusters/${enc(cluster)}/drift`;
      let report: Record<string, unknown>;
      if (flags.latest) report = await api(opts, 'GET', path);
      else {
        const r = await api<{ id: string }>(opts, 'POST', `/clusters/${enc(cluster)}/drift-check`, {});
        report = await waitReport(`${path}/${enc(r.id)}`);
      }
      print(report, () => process.stdout.write(`${driftView(report as never)}\n`));
      return 0;
    }
    case 'reconcile': {
      const [cluster] = args;
      if (!cluster) usage('reconcile needs a cluster');
      const path = `/clusters/${enc(cluster)}/reconcile`;
      await api(opts, 'POST', path, {});
      // Wait for the plan (the run waits for approval) or its end (nothing to do).
      for (;;) {
        const s = await api<{ running: boolean; progress?: { state?: string }; report?: unknown }>(opts, 'GET', path);
        if (!s.running || s.progress?.state === 'waiting-approval') {
          print(s, () => process.stdout.write(`${reconcileView(cluster, s)}\n`));
          return 0;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    case 'reconcile-approve':
    case 'reconcile-reject': {
      const [cluster, driftId] = args;
      if (!cluster || (cmd === 'reconcile-approve' && !driftId))
        usage(`${cmd} needs <cluster>${cmd === 'reconcile-approve' ? ' <drift-id>' : ''}`);
      const decision = cmd === 'reconcile-approve' ? 'approve' : 'reject';
      const r = await api<{ workflowId: string }>(opts, 'POST', `/clusters/${enc(cluster)}/reconcile/${decision}`, {
        ...(decision === 'approve' ? { driftId } : {}),
        ...(flags.note ? { note: flags.note } : {}),
      });
      return decision === 'approve' ? follow(r.workflowId, r) : (print(r, () => process.stdout.write(`rejected\n`)), 0);
    }
    case 'rotate': {
      const [cluster] = args;
      if (!cluster) usage(`${cmd} needs a cluster`);
      const body = {
        ...(flags.entry ? { entries: flags.entry } : {}),
        ...(flags['dry-run'] ? { dryRun: true } : {}),
        ...(flags.generate ? { generate: true } : {}),
        // How long each consumer's rollout may take before the entry is rolled back (the API checks 5–3600).
        ...(flags['rollout-timeout'] ? { rolloutTimeoutSeconds: Number(flags['rollout-timeout']) } : {}),
      };
      const r = await api(opts, 'POST', `/clusters/${enc(cluster)}/secrets/rotate`, body);
      return follow(String(r.workflowId), r);
    }
    case 'verify-backup': {
      const [cluster] = args;
      if (!cluster) usage('verify-backup needs a cluster');
      const body = {
        ...(flags.backup
          ? { backup: flags.backup }
          : flags['create-new']
            ? { createNew: true }
            : { latestFromSchedule: true }),
        ...(flags.namespace ? { namespaces: flags.namespace } : {}),
      };
      const r = await api(opts, 'POST', `/clusters/${enc(cluster)}/backups/verify`, body);
      return follow(String(r.workflowId), r);
    }
    case 'dr-restore': {
      const [cluster] = args;
      if (!cluster || !flags.backup || !flags.namespace)
        usage('dr-restore needs <cluster> --backup NAME --namespace NS');
      const r = await api<{ workflowId: string; requestId?: string; id?: string; temporalWebUrl?: string }>(
        opts,
        'POST',
        `/clusters/${enc(cluster)}/dr/restore`,
        {
          backup: flags.backup,
          namespaces: flags.namespace,
          ...(flags.force ? { force: true } : {}),
        },
      );
      const rid = String(r.id ?? r.requestId ?? r.workflowId);
      print(r, () =>
        process.stdout.write(
          `restore planned: ${r.workflowId}\n${r.temporalWebUrl ? `Temporal Web: ${r.temporalWebUrl}\n` : ''}` +
            `approve with: pedro-ops approve ${cluster} ${rid}   (or reject: pedro-ops reject ${cluster} ${rid})\n`,
        ),
      );
      return 0;
    }
    case 'recover-control-plane': {
      const [cluster] = args;
      if (!cluster) usage('recover-control-plane needs <cluster>');
      const r = await api<{ workflowId: string; id?: string; temporalWebUrl?: string }>(
        opts,
        'POST',
        `/clusters/${enc(cluster)}/control-plane/recover`,
        { ...(flags.node ? { node: flags.node } : {}), ...(flags.snapshot ? { snapshot: flags.snapshot } : {}) },
      );
      const rid = String(r.id ?? r.workflowId);
      print(r, () =>
        process.stdout.write(
          `recovery planned: ${r.workflowId}\n${r.temporalWebUrl ? `Temporal Web: ${r.temporalWebUrl}\n` : ''}` +
            `see the plan: pedro-ops status ${r.workflowId} --no-follow\n` +
            `approve with: pedro-ops approve ${cluster} ${rid} --control-plane   (or reject: pedro-ops reject ${cluster} ${rid} --control-plane)\n`,
        ),
      );
      return 0;
    }
    case 'approve':
    case 'reject': {
      const [cluster, id] = args;
      if (!cluster || !id) usage(`${cmd} needs <cluster> <restore-id>`);
      const route = flags['control-plane'] ? 'control-plane/recover' : 'dr/restore';
      const r = await api<{ workflowId?: string; by?: string; decision?: string }>(
        opts,
        'POST',
        `/clusters/${enc(cluster)}/${route}/${enc(id)}/${cmd}`,
        flags.note ? { note: flags.note } : {},
      );
      if (cmd === 'approve' && typeof r.workflowId === 'string') {
        if (!json) process.stderr.write(`approved ${r.workflowId}${r.by ? ` by ${r.by}` : ''}\n`);
        return follow(r.workflowId, r);
      }
      print(r, () => process.stdout.write(`${cmd}ed ${r.workflowId ?? id}: ${r.decision ?? cmd}\n`));
      return 0;
    }
    case 'schedules': {
      const [sub, cluster, scheduleId] = args;
      if (!sub || !cluster) usage('schedules needs list|pause|unpause|trigger|backfill <cluster>');
      const base = `/clusters/${enc(cluster)}/schedules`;
      if (sub === 'list') {
        const r = await api<{ schedules?: Record<string, unknown>[] }>(opts, 'GET', base);
        print(r, () => process.stdout.write(`${schedulesView(r.schedules ?? [])}\n`));
        return 0;
      }
      if (!scheduleId) usage(`schedules ${sub} needs a schedule id`);
      const path = `${base}/${enc(scheduleId)}`;
      const done = (r: Record<string, unknown>, what: string) =>
        print(r, () => process.stdout.write(`${scheduleId}: ${what}\n`));
      if (sub === 'pause' || sub === 'unpause')
        done(await api(opts, 'POST', `${path}/${sub}`, flags.note ? { note: flags.note } : {}), `${sub}d`);
      else if (sub === 'trigger') done(await api(opts, 'POST', `${path}/trigger`, {}), 'triggered');
      else if (sub === 'backfill') {
        if (!flags.start || !flags.end) usage('schedules backfill needs --start and --end');
        done(
          await api(opts, 'POST', `${path}/backfill`, { start: flags.start, end: flags.end }),
          `backfill ${flags.start} .. ${flags.end} requested`,
        );
      } else usage(`unknown schedules command ${sub}`);
      return 0;
    }
    default:
      usage(`unknown command ${cmd}`);
  }
}

function schedulesView(list: Record<string, unknown>[]): string {
  if (list.length === 0) return 'no schedules';
  const cell = (v: unknown): string =>
    v === undefined || v === null
      ? ''
      : typeof v === 'string'
        ? v
        : typeof v === 'number' || typeof v === 'boolean'
          ? String(v)
          : JSON.stringify(v);
  const rows = list.map((s) => [
    cell(s.scheduleId),
    cell(s.workflowType),
    s.paused ? 'paused' : 'active',
    cell(s.cron),
    cell(Array.isArray(s.nextRuns) ? s.nextRuns[0] : undefined),
    cell(Array.isArray(s.running) ? s.running.join(', ') : undefined),
    cell(s.note),
  ]);
  return table(['SCHEDULE', 'WORKFLOW', 'STATE', 'CRON', 'NEXT RUN', 'RUNNING', 'NOTE'], rows);
}

/** Starts a run; if one already runs (409), follows that one instead of failing. */
async function startOrAttach(path: string, body: unknown): Promise<Record<string, unknown>> {
  try {
    return await api(opts, 'POST', path, body);
  } catch (err) {
    if (err instanceof ApiError && err.status === 409 && typeof err.body.workflowId === 'string') {
      if (!json) process.stderr.write(`already running: following ${err.body.workflowId}\n`);
      return err.body;
    }
    throw err;
  }
}

main()
  .then((code) => process.exit(code))
  .catch((err) => {
    if (json)
      process.stdout.write(
        `${JSON.stringify({ error: err instanceof ApiError ? err.body : { message: (err as Error).message } })}\n`,
      );
    else process.stderr.write(`error: ${(err as Error).message}\n`);
    process.exit(1);
  });
