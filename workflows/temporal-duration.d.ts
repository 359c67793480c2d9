// Temporal's `Duration` (@temporalio/common lib/time.d.ts) is `StringValue | number`, with
// `StringValue` imported from `ms`. The `ms` release the SDK pulls in (3.0.0-canary.1) has an
// `exports` map without a `types` condition, so under NodeNext resolution TypeScript cannot find its
// types and every Duration silently becomes an error type (the `any` of the type-aware lint). This
// declares the module as `ms` itself does (node_modules/ms/dist/index.d.ts; upstream vercel/ms
// src/index.ts), so durations in workflows (timeouts, `condition`, `sleep`) are type-checked.
// Remove it when `ms` ships `exports.types`.
declare module 'ms' {
  type Unit =
    | 'Years'
    | 'Year'
    | 'Yrs'
    | 'Yr'
    | 'Y'
    | 'Weeks'
    | 'Week'
    | 'W'
    | 'Days'
    | 'Day'
    | 'D'
    | 'Hours'
    | 'Hour'
    | 'Hrs'
    | 'Hr'
    | 'H'
    | 'Minutes'
    | 'Minute'
    | 'Mins'
    | 'Min'
    | 'M'
    | 'Seconds'
    | 'Second'
    | 'Secs'
    | 'Sec'
    | 's'
    | 'Milliseconds'
    | 'Millisecond'
    | 'Msecs'
    | 'Msec'
    | 'Ms';
  type UnitAnyCase = Unit | Uppercase<Unit> | Lowercase<Unit>;
  export type StringValue = `${number}` | `${number}${UnitAnyCase}` | `${number} ${UnitAnyCase}`;
}
