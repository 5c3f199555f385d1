// A statsd backend for the tests: prints what each flush aggregated as one JSON line on
// stdout, so a test reads back exactly what the real server made of our datagrams.
'use strict';

exports.init = function (startupTime, config, events) {
  events.on('flush', function (timestamp, metrics) {
    const timers = {};
    for (const key of Object.keys(metrics.timer_data)) {
      const t = metrics.timer_data[key];
      timers[key] = { count: t.count, sum: t.sum, upper: t.upper, lower: t.lower };
    }
    process.stdout.write(JSON.stringify({
      counters: metrics.counters,
      gauges: metrics.gauges,
      timers: timers,
    }) + '\n');
  });
  return true;
};
