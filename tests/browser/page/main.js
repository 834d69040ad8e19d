// Joins the room given by ?url=&token= and records what happens in window.__log, for the tests to read
// (page.wait_for_function / page.evaluate). window.__room is the livekit-client Room, for tests that drive it.
// ?publish=1 also publishes the (fake) camera and microphone once connected; ?v0=1 joins on /rtc (two PCs);
// ?dynacast=1 and ?adaptiveStream=1 turn on the Room options of those names, ?autoSubscribe=0 turns off the
// connect option. window.__publishedVideo() says what the published camera sends, per simulcast layer (rid):
// whether its encoding is active, and its outbound-rtp bytes and frame size.
// Every subscribed video track is attached to a <video> element; window.__video[trackSid] counts its decoded
// frames (inbound-rtp framesDecoded, polled) and rendered frames (requestVideoFrameCallback), and the log gets
// one 'videoDecoded' entry per track once it has a decoded frame with a size.
import { Room, RoomEvent, Track } from 'livekit-client';

const t0 = performance.now();
window.__log = [];
window.__video = {};

function log(ev, data) {
  const entry = { t: Math.round(performance.now() - t0), ev, ...data };
  window.__log.push(entry);
  console.log('[lk] ' + JSON.stringify(entry));
}

function watchVideo(track, sid, identity) {
  const element = track.attach();
  element.muted = true;
  element.autoplay = true;
  element.playsInline = true;
  document.body.appendChild(element);
  const state = {
    sid, identity, framesDecoded: 0, keyFramesDecoded: 0, bytesReceived: 0, framesRendered: 0, width: 0, height: 0,
  };
  window.__video[sid] = state;
  let reported = false;
  const report = () => {
    if (!reported && (state.framesDecoded > 0 || state.framesRendered > 0) && state.width > 0) {
      reported = true;
      log('videoDecoded', { ...state });
    }
  };
  if ('requestVideoFrameCallback' in element) {
    const onFrame = (_now, meta) => {
      state.framesRendered += 1;
      state.width = meta.width;
      state.height = meta.height;
      report();
      element.requestVideoFrameCallback(onFrame);
    };
    element.requestVideoFrameCallback(onFrame);
  }
  const poll = setInterval(async () => {
    if (!track.receiver) {
      clearInterval(poll); // unsubscribed
      return;
    }
    try {
      const stats = await track.receiver.getStats();
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          state.framesDecoded = s.framesDecoded || 0;
          state.keyFramesDecoded = s.keyFramesDecoded || 0;
          state.bytesReceived = s.bytesReceived || 0;
          if (s.frameWidth) {
            state.width = s.frameWidth;
            state.height = s.frameHeight;
          }
        }
      });
      report();
    } catch (e) {
      log('statsFailed', { sid, error: String(e) });
      clearInterval(poll);
    }
  }, 250);
}

async function publish(room) {
  try {
    // No audio processing: it would treat the fake microphone's beep as noise.
    await room.localParticipant.setMicrophoneEnabled(true, {
      echoCancellation: false,
      noiseSuppression: false,
      autoGainControl: false,
    });
    await room.localParticipant.setCameraEnabled(true);
    const tracks = [...room.localParticipant.trackPublications.values()].map((p) => ({
      kind: p.kind,
      sid: p.trackSid,
      source: p.source,
    }));
    log('published', { tracks });
  } catch (e) {
    log('publishFailed', { error: String(e) });
  }
}

window.__publishedVideo = async () => {
  const publication = window.__room.localParticipant.getTrackPublication(Track.Source.Camera);
  const sender = publication && publication.track && publication.track.sender;
  if (!sender) {
    return {};
  }
  const layers = {};
  for (const e of sender.getParameters().encodings) {
    layers[e.rid || ''] = { active: e.active, bytesSent: 0, frameHeight: 0 };
  }
  (await sender.getStats()).forEach((s) => {
    const layer = s.type === 'outbound-rtp' && layers[s.rid || ''];
    if (layer) {
      layer.bytesSent = s.bytesSent || 0;
      layer.frameHeight = s.frameHeight || 0;
    }
  });
  return layers;
};

async function main() {
  const query = new URLSearchParams(location.search);
  const room = new Room({
    dynacast: query.get('dynacast') === '1',
    adaptiveStream: query.get('adaptiveStream') === '1',
    // ?v0=1: two peer connections on /rtc (the SDK's default is one, on /rtc/v1)
    ...(query.get('v0') === '1' ? { singlePeerConnection: false } : {}),
  });
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
    .on(RoomEvent.TrackSubscribed, (track, publication, p) => {
      log('trackSubscribed', { kind: track.kind, sid: publication.trackSid, identity: p.identity });
      if (track.kind === Track.Kind.Video) {
        watchVideo(track, publication.trackSid, p.identity);
      }
    })
    .on(RoomEvent.TrackUnsubscribed, (track, publication, p) =>
      log('trackUnsubscribed', { kind: track.kind, sid: publication.trackSid, identity: p.identity }))
    .on(RoomEvent.TrackSubscriptionPermissionChanged, (publication, status, p) =>
      log('trackPermission', { sid: publication.trackSid, status, identity: p.identity }))
    .on(RoomEvent.TrackSubscriptionFailed, (sid, p, error) =>
      log('trackSubscriptionFailed', { sid, identity: p.identity, error: String(error) }))
    .on(RoomEvent.LocalTrackPublished, (publication) =>
      log('localTrackPublished', { kind: publication.kind, sid: publication.trackSid, source: publication.source }))
    .on(RoomEvent.ConnectionStateChanged, (state) => log('connectionState', { state }))
    .on(RoomEvent.Disconnected, (reason) => log('disconnected', { reason }));
  try {
    await room.connect(query.get('url'), query.get('token'), {
      autoSubscribe: query.get('autoSubscribe') !== '0',
    });
    log('connectResolved', { remotes: [...room.remoteParticipants.keys()] });
  } catch (e) {
    log('connectFailed', { error: String(e), reason: e && e.reason });
    return;
  }
  if (query.get('publish') === '1') {
    await publish(room);
  }
}

main();
