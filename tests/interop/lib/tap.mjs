// TAP helpers the Node suites share: checks that print "ok N - name" or
// "not ok N - name" with the error as comments, and the closing plan.
let n = 0, failed = 0;

export async function check(name, fn) {
  n++;
  try {
    await fn();
    console.log(`ok ${n} - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok ${n} - ${name}`);
    for (const line of String(e && e.stack || e).split('\n')) console.log(`# ${line}`);
  }
}

export function assert(cond, what) { if (!cond) throw new Error(what); }

// polls fn until it returns something truthy (that value), or throws after ms
export async function waitFor(fn, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

// prints the plan and exits with the verdict
export function done() {
  console.log(`1..${n}`);
  process.exit(failed ? 1 : 0);
}
