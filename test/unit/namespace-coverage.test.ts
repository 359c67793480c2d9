// Which namespaces a Velero Backup holds: Velero's own rule (pkg/util/collections/includes_excludes.go,
// IncludesExcludes.ShouldInclude): an excluded match wins; an empty includes list or "*" includes
// everything; otherwise an include must match. Includes and excludes are gobwas/glob patterns.
import { describe, expect, test } from 'vitest';
import { backupCovers } from '../../activities/velero/client.js';

const b = (includedNamespaces: string[], excludedNamespaces: string[] = []) => ({
  includedNamespaces,
  excludedNamespaces,
});

describe('backup namespace coverage (verify-backup and dr-restore)', () => {
  test('excludedNamespaces win over includes, "*" and the empty list', () => {
    expect(backupCovers(b(['*'], ['eleduck-analytics']), ['eleduck-analytics', 'monitoring'])).toEqual([
      'eleduck-analytics',
    ]);
    expect(backupCovers(b([], ['monitoring']), ['eleduck-analytics', 'monitoring'])).toEqual(['monitoring']);
    expect(backupCovers(b(['eleduck-analytics'], ['eleduck-*']), ['eleduck-analytics'])).toEqual(['eleduck-analytics']);
  });

  test('glob patterns in includes and excludes match as Velero matches them', () => {
    expect(backupCovers(b(['eleduck-*', 'zot-system']), ['eleduck-analytics', 'zot-system'])).toEqual([]);
    expect(backupCovers(b(['*-system'], ['zot-?ystem']), ['openbao-system', 'zot-system'])).toEqual(['zot-system']);
    expect(backupCovers(b(['{openbao,powerdns}-system']), ['openbao-system', 'powerdns-system', 'monitoring'])).toEqual(
      ['monitoring'],
    );
    expect(backupCovers(b(['[a-m]*']), ['eleduck-analytics', 'monitoring', 'openbao-system'])).toEqual([
      'openbao-system',
    ]);
    expect(backupCovers(b(['[!e]*']), ['eleduck-analytics', 'monitoring'])).toEqual(['eleduck-analytics']);
    // Plain names are still plain: a dot or a dash is no pattern.
    expect(backupCovers(b(['a.b']), ['aXb'])).toEqual(['aXb']);
  });
});
