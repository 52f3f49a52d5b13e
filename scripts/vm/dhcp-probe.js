#!/usr/bin/env node
// A DHCP client for one request, written independently of lunbox's codec, for guest-ncm.sh:
//   node dhcp-probe.js renew    MAC SRC SERVER_IP   RENEWING: unicast REQUEST, ciaddr = SRC
//   node dhcp-probe.js reboot   MAC SRC REQUESTED   INIT-REBOOT: broadcast REQUEST, option 50
//   node dhcp-probe.js discover MAC SRC             DISCOVER with the BROADCAST flag
// SRC is an address of this namespace: the request leaves from SRC:68 (so a limited broadcast
// goes out of SRC's interface, without a default route); replies are read on 0.0.0.0:68 too.
// Prints the first reply with the same xid as one line:
//   reply ACK yiaddr=10.55.0.2 ciaddr=... lease=3600 mask=255.255.255.252 router=no dns=no server=10.55.0.1
// or "no reply" after 3 s (exit 1). Byte layout: RFC 2131 §2, options RFC 2132.
'use strict';
const dgram = require('node:dgram');
const crypto = require('node:crypto');

const [mode, macText, src, a1] = process.argv.slice(2);
const TYPES = { 1: 'DISCOVER', 2: 'OFFER', 3: 'REQUEST', 5: 'ACK', 6: 'NAK' };
const ip4 = (s) => Buffer.from(s.split('.').map(Number));
const mac = Buffer.from(macText.replace(/[:-]/g, ''), 'hex');

const msg = Buffer.alloc(300);
const xid = crypto.randomBytes(4);
msg[0] = 1; // BOOTREQUEST
msg[1] = 1; // Ethernet
msg[2] = 6;
xid.copy(msg, 4);
mac.copy(msg, 28);
msg.writeUInt32BE(0x63825363, 236);
let o = 240;
const opt = (code, value) => {
  msg[o++] = code;
  msg[o++] = value.length;
  value.copy(msg, o);
  o += value.length;
};
let dest = '255.255.255.255';
if (mode === 'renew') {
  ip4(src).copy(msg, 12); // ciaddr
  opt(53, Buffer.from([3]));
  dest = a1;
} else if (mode === 'reboot') {
  opt(53, Buffer.from([3]));
  opt(50, ip4(a1));
} else if (mode === 'discover') {
  msg.writeUInt16BE(0x8000, 10);
  opt(53, Buffer.from([1]));
} else {
  console.error('usage: dhcp-probe.js renew|reboot|discover MAC SRC [IP]');
  process.exit(2);
}
opt(55, Buffer.from([1, 3, 6, 51]));
msg[o] = 255;

const listener = dgram.createSocket({ type: 'udp4', reuseAddr: true });
const sender = dgram.createSocket({ type: 'udp4', reuseAddr: true });
const timer = setTimeout(() => {
  console.log('no reply');
  process.exit(1);
}, 3000);
const onReply = (b) => {
  if (b.length < 240 || b[0] !== 2 || !b.subarray(4, 8).equals(xid)) return;
  const opts = new Map();
  for (let i = 240; i < b.length && b[i] !== 255; ) {
    if (b[i] === 0) {
      i++;
      continue;
    }
    opts.set(b[i], b.subarray(i + 2, i + 2 + b[i + 1]));
    i += 2 + b[i + 1];
  }
  const q = (x) => (x ? Array.from(x).join('.') : 'none');
  const t = opts.get(53);
  console.log(
    `reply ${t ? TYPES[t[0]] || t[0] : 'BOOTP'} yiaddr=${q(b.subarray(16, 20))} ciaddr=${q(b.subarray(12, 16))}` +
      ` lease=${opts.has(51) ? opts.get(51).readUInt32BE(0) : 'none'} mask=${q(opts.get(1))}` +
      ` router=${opts.has(3) ? 'yes' : 'no'} dns=${opts.has(6) ? 'yes' : 'no'} server=${q(opts.get(54))}`,
  );
  clearTimeout(timer);
  process.exit(0);
};
listener.on('message', onReply);
sender.on('message', onReply);
listener.bind(68, '0.0.0.0', () => {
  sender.bind(68, src, () => {
    sender.setBroadcast(true);
    sender.send(msg, 67, dest);
  });
});
