// HelmChart timeouts as helm-controller holds them: it writes spec.timeout back in Go's
// time.Duration.String() form (k3s-io/helm-controller v0.16.5 pkg/controllers/chart/chart.go
// shouldManage's Update), so the orchestrator writes that form and compares by value.
import { describe, expect, it } from 'vitest';
import { goDuration, helmChartDiff, parseGoDuration } from '../../activities/components/helmchart.js';

describe('Go durations in HelmChart specs', () => {
  it("writes Duration.String()'s form", () => {
    expect([0, 30, 60, 90, 600, 1800, 3600, 3661, 86_400].map(goDuration)).toEqual([
      '0s',
      '30s',
      '1m0s',
      '1m30s',
      '10m0s',
      '30m0s',
      '1h0m0s',
      '1h1m1s',
      '24h0m0s',
    ]);
  });

  it('parses what time.ParseDuration accepts, and nothing else', () => {
    expect(parseGoDuration('600s')).toBe(600);
    expect(parseGoDuration('10m0s')).toBe(600);
    expect(parseGoDuration('1h30m')).toBe(5400);
    expect(parseGoDuration('1.5h')).toBe(5400);
    expect(parseGoDuration('250ms')).toBeCloseTo(0.25);
    expect(parseGoDuration('0')).toBe(0);
    for (const bad of ['', '10', 'ten minutes', '5d', '-', 600])
      expect(parseGoDuration(bad), String(bad)).toBeUndefined();
  });

  it('a timeout in another form is no difference; another value is', () => {
    const spec = (timeout: string) => ({ spec: { chart: 'x', timeout } });
    expect(helmChartDiff(spec('600s'), spec('10m0s'))).toEqual([]);
    expect(helmChartDiff(spec('600s'), spec('10m1s'))).toEqual(['timeout']);
    expect(helmChartDiff(spec('600s'), spec('soon'))).toEqual(['timeout']);
  });
});
