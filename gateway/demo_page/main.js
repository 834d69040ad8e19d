// The demo page at `/` (gateway/demo.py): join a room with the camera and microphone, see the participant
// list with their mute states and the active speaker, one video tile per camera. Bundled with livekit-client
// by esbuild at install (setup.py). Without a token typed in, it asks the server for one (POST /demo/token),
// which only `raysfu serve --dev` mints.
import { Room, RoomEvent, Track } from 'livekit-client';

const $ = (id) => document.getElementById(id);
let room = null;
let speakers = new Set();

function status(text) {
  $('status').textContent = text;
}

async function fetchToken(identity, roomName) {
  const response = await fetch('demo/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ identity, room: roomName }),
  });
  if (!response.ok) {
    throw new Error(await response.text());
  }
  return (await response.json()).token;
}

function muted(participant, source) {
  const publication = participant.getTrackPublication(source);
  return !publication || publication.isMuted;
}

function tile(participant) {
  let figure = document.querySelector(`figure[data-identity="${CSS.escape(participant.identity)}"]`);
  if (!figure) {
    figure = document.createElement('figure');
    figure.dataset.identity = participant.identity;
    const video = document.createElement('video');
    video.autoplay = true;
    video.muted = true;
    video.playsInline = true;
    const caption = document.createElement('figcaption');
    figure.append(video, caption);
    $('tiles').append(figure);
  }
  return figure;
}

function render() {
  if (!room) {
    return;
  }
  const everyone = [room.localParticipant, ...room.remoteParticipants.values()];
  $('participants').replaceChildren(
    ...everyone.map((p) => {
      const item = document.createElement('li');
      item.dataset.identity = p.identity;
      const you = p === room.localParticipant ? ' (you)' : '';
      const mic = muted(p, Track.Source.Microphone) ? 'mic off' : 'mic on';
      const camera = muted(p, Track.Source.Camera) ? 'camera off' : 'camera on';
      item.textContent = `${p.name || p.identity}${you}: ${mic}, ${camera}`;
      item.classList.toggle('speaking', speakers.has(p.identity));
      return item;
    }),
  );
  for (const figure of document.querySelectorAll('#tiles figure')) {
    const identity = figure.dataset.identity;
    const p = identity === room.localParticipant.identity ? room.localParticipant : room.remoteParticipants.get(identity);
    if (!p) {
      figure.remove();
      continue;
    }
    figure.querySelector('figcaption').textContent = `${p.name || p.identity}${speakers.has(identity) ? ' (speaking)' : ''}`;
    figure.classList.toggle('speaking', speakers.has(identity));
  }
  $('mic').textContent = room.localParticipant.isMicrophoneEnabled ? 'Mute microphone' : 'Unmute microphone';
  $('mic').classList.toggle('off', !room.localParticipant.isMicrophoneEnabled);
  $('camera').textContent = room.localParticipant.isCameraEnabled ? 'Turn camera off' : 'Turn camera on';
  $('camera').classList.toggle('off', !room.localParticipant.isCameraEnabled);
}

function showTrack(track, participant) {
  if (track.kind === Track.Kind.Video && track.source === Track.Source.Camera) {
    track.attach(tile(participant).querySelector('video'));
  } else if (track.kind === Track.Kind.Audio && participant !== room.localParticipant) {
    document.body.append(track.attach());
  }
  render();
}

async function join(event) {
  event.preventDefault();
  const name = $('name').value.trim();
  const roomName = $('room').value.trim();
  $('join-button').disabled = true;
  status('joining...');
  try {
    const token = $('token').value.trim() || (await fetchToken(name, roomName));
    room = new Room({ adaptiveStream: true, dynacast: true });
    room
      .on(RoomEvent.ParticipantConnected, render)
      .on(RoomEvent.ParticipantDisconnected, render)
      .on(RoomEvent.TrackSubscribed, (track, _publication, participant) => showTrack(track, participant))
      .on(RoomEvent.TrackUnsubscribed, (track) => {
        track.detach().forEach((element) => element.tagName === 'AUDIO' && element.remove());
        render();
      })
      .on(RoomEvent.LocalTrackPublished, (publication) => showTrack(publication.track, room.localParticipant))
      .on(RoomEvent.TrackMuted, render)
      .on(RoomEvent.TrackUnmuted, render)
      .on(RoomEvent.ActiveSpeakersChanged, (active) => {
        speakers = new Set(active.map((p) => p.identity));
        render();
      })
      .on(RoomEvent.Disconnected, (reason) => {
        status(`disconnected (${reason ?? 'left'})`);
        $('call').style.display = 'none';
        $('join').style.display = '';
        $('join-button').disabled = false;
        $('tiles').replaceChildren();
        room = null;
      });
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`;
    await room.connect(url, token);
    $('join').style.display = 'none';
    $('call').style.display = 'block';
    $('room-name').textContent = `room ${room.name}`;
    tile(room.localParticipant);
    render();
    status('');
    await room.localParticipant.enableCameraAndMicrophone();
    render();
  } catch (e) {
    status(`could not join: ${e.message || e}`);
    $('join-button').disabled = false;
  }
}

async function toggle(enabled, set) {
  try {
    await set(!enabled);
  } catch (e) {
    status(String(e.message || e));
  }
  render();
}

$('join').addEventListener('submit', join);
$('mic').addEventListener('click', () =>
  toggle(room.localParticipant.isMicrophoneEnabled, (on) => room.localParticipant.setMicrophoneEnabled(on)));
$('camera').addEventListener('click', () =>
  toggle(room.localParticipant.isCameraEnabled, (on) => room.localParticipant.setCameraEnabled(on)));
$('leave').addEventListener('click', () => room && room.disconnect());
