// The soak's load: N y-websocket clients (ws + yjs) in R rooms, each editing at a steady
// pace, each measuring when every other member's edit reaches it.
//
//   node bench/soak_client.mjs '<json options>'
//
// Options: url (ws://host:port/realtime/records), connections, rooms, editInterval (s),
// seconds (editing time), drain (s), out (path of the JSON report), connectBatch.
//
// Every client is a Y.Doc speaking the y-websocket sync protocol. An edit is one
// transaction setting the client's own key in the Y.Map "e" (overwriting its previous
// value, so documents stay small however long the soak runs); it advances the client's
// clock by one, so an edit is identified by (clientID, clock). A member has received it
// once its state vector covers that clock: deliveries are counted, and timed, from the
// receivers' state vectors, which also covers updates that arrive batched (a resync).
// Expected deliveries: each edit, times the other members connected when it was made.
// Lost = expected - received after the drain. Per minute (by send time): edits,
// deliveries, lost, latency percentiles. Reconnects are counted (a close is not a loss
// as long as the resync delivers).
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const require = createRequire(new URL('../tests/js/package.json', import.meta.url));
const WebSocket = require('ws');
const Y = require('yjs');
const encoding = require('lib0/encoding');
const decoding = require('lib0/decoding');

const opts = JSON.parse(process.argv[2]);
const {
  url, connections, rooms, editInterval, seconds, drain, out, connectBatch = 50,
} = opts;

const MSG_SYNC = 0;
const STEP1 = 0;
const STEP2 = 1;
const UPDATE = 2;
const REMOTE = 'remote';

const started = performance.now();
const now = () => performance.now();
// By send time; an interval firing at the very end counts in the last minute.
const lastMinute = Math.max(0, Math.ceil(seconds / 60) - 1);
const minuteOf = (t) => Math.min(lastMinute, Math.floor((t - editStart) / 60000));
let editStart = 0;

// Per room: its clients; per writer: the send times of its edits, by clock.
const roomsState = Array.from({ length: rooms }, () => ({ clients: [] }));
const minutes = new Map(); // minute -> { edits, expected, delivered, latencies: [] }
const bucket = (m) => {
  let b = minutes.get(m);
  if (!b) {
    b = { edits: 0, expected: 0, delivered: 0, latencies: [] };
    minutes.set(m, b);
  }
  return b;
};
let reconnects = 0;
let closes = {};
let errors = 0;

function encodeSync(type, payload) {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, MSG_SYNC);
  encoding.writeVarUint(e, type);
  encoding.writeVarUint8Array(e, payload);
  return encoding.toUint8Array(e);
}

class Client {
  constructor(index, room) {
    this.index = index;
    this.room = room;
    this.doc = new Y.Doc();
    this.map = this.doc.getMap('e');
    this.key = `w${index}`;
    this.edits = []; // [{ clock, sentAt, minute }], in clock order
    this.seen = new Map(); // writer index -> how many of its edits we have counted
    this.open = false;
    this.counter = 0;
    this.doc.on('update', (update, origin) => {
      if (origin === REMOTE) this.onRemote();
      else if (this.open) this.ws.send(encodeSync(UPDATE, update));
    });
  }

  connect() {
    return new Promise((resolve) => {
      const ws = new WebSocket(`${url}/soak-${this.room}`, { perMessageDeflate: false });
      ws.binaryType = 'nodebuffer';
      this.ws = ws;
      ws.on('open', () => {
        this.open = true;
        ws.send(encodeSync(STEP1, Y.encodeStateVector(this.doc)));
        resolve();
      });
      ws.on('message', (data, isBinary) => {
        if (!isBinary) return; // control frames
        this.onMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      });
      ws.on('error', () => { errors += 1; });
      ws.on('close', (code) => {
        const wasOpen = this.open;
        this.open = false;
        closes[code] = (closes[code] || 0) + 1;
        if (!stopping) {
          reconnects += 1;
          setTimeout(() => this.connect(), wasOpen ? 100 : 500);
        }
        resolve();
      });
    });
  }

  onMessage(bytes) {
    const d = decoding.createDecoder(bytes);
    if (decoding.readVarUint(d) !== MSG_SYNC) return; // awareness: none in this soak
    const type = decoding.readVarUint(d);
    const payload = decoding.readVarUint8Array(d);
    if (type === STEP1) {
      this.ws.send(encodeSync(STEP2, Y.encodeStateAsUpdate(this.doc, payload)));
    } else {
      Y.applyUpdate(this.doc, payload, REMOTE);
    }
  }

  // A remote update arrived: count every other member's edit our state now covers.
  onRemote() {
    const t = now();
    const sv = Y.encodeStateVector(this.doc);
    const vector = Y.decodeStateVector(sv);
    for (const other of roomsState[this.room].clients) {
      if (other === this) continue;
      const clock = vector.get(other.doc.clientID) || 0;
      let count = this.seen.get(other.index) || 0;
      while (count < other.edits.length && other.edits[count].clock < clock) {
        const edit = other.edits[count];
        if (edit.expectedBy.has(this.index)) {
          const b = bucket(edit.minute);
          b.delivered += 1;
          b.latencies.push(t - edit.sentAt);
        }
        count += 1;
      }
      this.seen.set(other.index, count);
    }
  }

  edit() {
    if (!this.open) return;
    const members = roomsState[this.room].clients.filter((c) => c !== this && c.open);
    const clock = Y.encodeStateVector(this.doc);
    const before = Y.decodeStateVector(clock).get(this.doc.clientID) || 0;
    const t = now();
    const record = {
      clock: before, sentAt: t, minute: minuteOf(t), expectedBy: new Set(members.map((c) => c.index)),
    };
    this.edits.push(record);
    const b = bucket(record.minute);
    b.edits += 1;
    b.expected += members.length;
    this.counter += 1;
    this.map.set(this.key, this.counter);
  }
}

let stopping = false;
const clients = [];
for (let i = 0; i < connections; i += 1) {
  const c = new Client(i, i % rooms);
  clients.push(c);
  roomsState[c.room].clients.push(c);
}

for (let i = 0; i < clients.length; i += connectBatch) {
  await Promise.all(clients.slice(i, i + connectBatch).map((c) => c.connect()));
}
const connectSeconds = (now() - started) / 1000;
// Let every client finish its initial sync before the clock starts.
await new Promise((r) => setTimeout(r, 2000));
const connected = clients.filter((c) => c.open).length;
process.stdout.write(JSON.stringify({ type: 'connected', connected, connectSeconds }) + '\n');

editStart = now();
const timers = clients.map((c) => {
  const phase = Math.random() * editInterval * 1000;
  return setTimeout(() => {
    c.edit();
    c.timer = setInterval(() => c.edit(), editInterval * 1000);
  }, phase);
});

// Report the client's own load once a minute (is it the bottleneck?).
let lastCpu = process.cpuUsage();
let lastWall = now();
const clientLoad = [];
const loadTimer = setInterval(() => {
  const cpu = process.cpuUsage(lastCpu);
  const wall = now() - lastWall;
  clientLoad.push(((cpu.user + cpu.system) / 1000) / wall);
  lastCpu = process.cpuUsage();
  lastWall = now();
  const m = Math.min(lastMinute, Math.floor((now() - editStart) / 60000) - 1);
  const b = minutes.get(m);
  process.stdout.write(JSON.stringify({ type: 'minute', minute: m, edits: b ? b.edits : 0 }) + '\n');
}, 60000);

await new Promise((r) => setTimeout(r, seconds * 1000));
for (const t of timers) clearTimeout(t);
for (const c of clients) clearInterval(c.timer);
const editSeconds = (now() - editStart) / 1000;
await new Promise((r) => setTimeout(r, drain * 1000));
clearInterval(loadTimer);
stopping = true;
const stillOpen = clients.filter((c) => c.open).length;
for (const c of clients) c.ws.terminate();

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const rows = [...minutes.keys()].sort((a, b) => a - b).map((m) => {
  const b = minutes.get(m);
  const sorted = b.latencies.sort((x, y) => x - y);
  return {
    minute: m + 1,
    edits: b.edits,
    expected: b.expected,
    delivered: b.delivered,
    lost: b.expected - b.delivered,
    p50_ms: percentile(sorted, 50),
    p95_ms: percentile(sorted, 95),
    p99_ms: percentile(sorted, 99),
    max_ms: sorted.length ? sorted[sorted.length - 1] : null,
  };
});
const total = rows.reduce((acc, r) => ({
  edits: acc.edits + r.edits,
  expected: acc.expected + r.expected,
  delivered: acc.delivered + r.delivered,
  lost: acc.lost + r.lost,
}), { edits: 0, expected: 0, delivered: 0, lost: 0 });
writeFileSync(out, JSON.stringify({
  connections, rooms, editInterval, seconds, editSeconds, drain, connectSeconds, connected,
  stillOpen, reconnects, closes, errors, clientCpu: clientLoad, minutes: rows, total,
}, null, 1));
process.stdout.write(JSON.stringify({ type: 'done', total }) + '\n');
process.exit(0);
