// Joins the room given by ?url=&token= and records what happens in window.__log, for the tests to read
// (page.wait_for_function / page.evaluate). window.__room is the livekit-client Room, for tests that drive it.
import { Room, RoomEvent } from 'livekit-client';

const t0 = performance.now();
window.__log = [];

function log(ev, data) {
  const entry = { t: Math.round(performance.now() - t0), ev, ...data };
  window.__log.push(entry);
  console.log('[lk] ' + JSON.stringify(entry));
}

async function main() {
  const query = new URLSearchParams(location.search);
  const room = new Room();
  window.__room = room;
  // Listeners go on before connect(): events can arrive before Connected.
  room
    .on(RoomEvent.Connected, () =>
      log('connected', { sid: room.localParticipant.sid, identity: room.localParticipant.identity }))
    .on(RoomEvent.ParticipantConnected, (p) => log('participantConnected', { identity: p.identity }))
    .on(RoomEvent.ParticipantDisconnected, (p) => log('participantDisconnected', { identity: p.identity }))
    .on(RoomEvent.ParticipantMetadataChanged, (prev, p) =>
      log('participantMetadataChanged', { identity: p.identity, metadata: p.metadata }))
    .on(RoomEvent.DataReceived, (payload, p, kind, topic) =>
      log('dataReceived', { text: new TextDecoder().decode(payload), from: p ? p.identity : null, kind, topic }))
    .on(RoomEvent.ConnectionStateChanged, (state) => log('connectionState', { state }))
    .on(RoomEvent.Disconnected, (reason) => log('disconnected', { reason }));
  try {
    await room.connect(query.get('url'), query.get('token'));
    log('connectResolved', { remotes: [...room.remoteParticipants.keys()] });
  } catch (e) {
    log('connectFailed', { error: String(e), reason: e && e.reason });
  }
}

main();
