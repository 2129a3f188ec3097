// Node's `net`: the address helpers libraries use (`isIP`); sockets themselves throw when used.
import { unavailable } from './unavailable.mjs';

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
export const isIPv4 = (s) => typeof s === 'string' && V4.test(s);
export function isIPv6(s) {
  if (typeof s !== 'string' || !s.includes(':')) return false;
  try {
    return new URL(`http://[${s.split('%')[0]}]/`).hostname.length > 2;
  } catch {
    return false;
  }
}
export const isIP = (s) => (isIPv4(s) ? 4 : isIPv6(s) ? 6 : 0);

const sockets = unavailable(
  'net',
  'a function has no raw sockets: reach the service over HTTP with fetch (its REST/HTTP API), or publish events with event.emitCloudEvent',
);
export const { connect, createConnection, createServer, Socket, Server } = {
  connect: sockets.connect,
  createConnection: sockets.createConnection,
  createServer: sockets.createServer,
  Socket: sockets.Socket,
  Server: sockets.Server,
};
export default { isIP, isIPv4, isIPv6, connect, createConnection, createServer, Socket, Server };
