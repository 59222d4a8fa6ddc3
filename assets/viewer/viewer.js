// Peep viewer: WHEP playback with minimal latency, scaling, zoom/pan,
// statistics and a state shown in words. No external resources.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const video = $('video');
  const stage = $('stage');
  const statusBox = $('status');
  const statusText = $('status-text');
  const statsBox = $('stats');
  const helpBox = $('help');
  const passwordForm = $('password');
  const passwordInput = $('password-input');
  const passwordLabel = $('password-label');

  const base = location.pathname.replace(/\/+$/, ''); // /s/<token>
  const whepUrl = base + '/whep';

  // Jitter buffer delay (ms, averaged over a second) past which the page
  // reconnects to skip to live, and for how many consecutive seconds.
  const SKIP_TO_LIVE_MS = 400;
  const SKIP_TO_LIVE_SECONDS = 2;
  // Not sooner after (re)connecting than this, nor more often: on a link
  // slower than the stream a fresh start only adds a keyframe burst.
  const SKIP_TO_LIVE_HOLDOFF_MS = 10000;
  let connectedAt = 0;

  const MESSAGES = {
    connecting: 'Connecting…',
    waiting: 'Connected. Waiting for the picture…',
    live: '',
    reconnecting: 'Connection lost. Reconnecting…',
    ended: 'The share has ended.',
    kicked: 'You were removed from this share.',
    password: 'This share is protected by a password.',
    wrongPassword: 'Wrong password. Try again.',
    throttled: 'Too many wrong passwords.',
    invalid: 'This link is invalid or the share has ended.',
    full: 'This share is full. Waiting for a free place…',
    error: 'Cannot connect.',
    // The sentence for `noCodec` comes from the server (it names the codecs
    // this browser offered); this is the fallback.
    noCodec: 'This browser offers no video codec Peep can send (H.264, VP9 or VP8). Open the link in Firefox, Chrome, Edge or Safari.',
    unsupported: 'This browser cannot play WebRTC video (it has no RTCPeerConnection). Open the link in Firefox, Chrome, Edge or Safari.',
  };

  let state = '';
  let pc = null;
  let resource = null;
  let events = null;
  let password = null;
  let finished = false;
  let attempt = 0;
  let retryTimer = null;
  let disconnectTimer = null;
  // firstFrameMs / offerSentMs: milliseconds since the page started loading.
  const counters = { reconnects: 0, skipsToLive: 0, framesRendered: 0, offerSentMs: null, firstFrameMs: null };

  function setState(next, detail) {
    state = next;
    statusText.textContent = detail || MESSAGES[next] || next;
    statusBox.hidden = next === 'live';
    document.body.dataset.state = next;
  }

  function cleanup(sendDelete) {
    clearTimeout(retryTimer);
    clearTimeout(disconnectTimer);
    if (events) {
      events.close();
      events = null;
    }
    if (resource && sendDelete) {
      fetch(resource, { method: 'DELETE', keepalive: true }).catch(() => {});
    }
    resource = null;
    if (pc) {
      pc.ontrack = null;
      pc.onconnectionstatechange = null;
      pc.close();
      pc = null;
    }
  }

  function finish(finalState, detail) {
    finished = true;
    cleanup(false);
    video.srcObject = null;
    setState(finalState, detail);
  }

  function scheduleReconnect(delayMs) {
    if (finished) return;
    cleanup(true);
    setState('reconnecting');
    const delay = delayMs ?? Math.min(5000, 250 * 2 ** attempt);
    attempt += 1;
    counters.reconnects += 1;
    retryTimer = setTimeout(connect, delay);
  }

  function gatheringComplete(conn, timeoutMs) {
    if (conn.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        conn.removeEventListener('icegatheringstatechange', check);
        resolve();
      };
      const check = () => conn.iceGatheringState === 'complete' && done();
      conn.addEventListener('icegatheringstatechange', check);
      setTimeout(done, timeoutMs);
    });
  }

  function askPassword(wrong) {
    setState(wrong ? 'wrongPassword' : 'password');
    passwordLabel.textContent = wrong ? MESSAGES.wrongPassword : MESSAGES.password;
    passwordForm.hidden = false;
    passwordInput.value = '';
    passwordInput.focus();
  }

  passwordForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    password = passwordInput.value;
    passwordForm.hidden = true;
    attempt = 0;
    connect();
  });

  async function connect() {
    if (finished) return;
    cleanup(true);
    setState(counters.reconnects > 0 || attempt > 0 ? 'reconnecting' : 'connecting');
    const conn = new RTCPeerConnection();
    pc = conn;
    const transceiver = conn.addTransceiver('video', { direction: 'recvonly' });
    // Play frames as soon as they are decoded.
    if ('jitterBufferTarget' in transceiver.receiver) transceiver.receiver.jitterBufferTarget = 0;
    if ('playoutDelayHint' in transceiver.receiver) transceiver.receiver.playoutDelayHint = 0;
    conn.ontrack = (ev) => {
      video.srcObject = new MediaStream([ev.track]);
      video.play().catch(() => {});
    };
    conn.onconnectionstatechange = () => {
      if (conn !== pc) return;
      const s = conn.connectionState;
      if (s === 'connected') {
        connectedAt = performance.now();
        clearTimeout(disconnectTimer);
        if (state !== 'live') setState('waiting');
      } else if (s === 'failed' || s === 'closed') {
        scheduleReconnect();
      } else if (s === 'disconnected') {
        setState('reconnecting');
        disconnectTimer = setTimeout(() => conn === pc && conn.connectionState !== 'connected' && scheduleReconnect(0), 2000);
      }
    };
    try {
      await conn.setLocalDescription(await conn.createOffer());
      await gatheringComplete(conn, 1000);
      const headers = { 'Content-Type': 'application/sdp' };
      if (password) headers.Authorization = 'Bearer ' + password;
      if (counters.offerSentMs === null) counters.offerSentMs = performance.now();
      const resp = await fetch(whepUrl, { method: 'POST', headers, body: conn.localDescription.sdp });
      if (conn !== pc) return;
      const body = await resp.text();
      if (resp.status === 201) {
        resource = resp.headers.get('Location');
        await conn.setRemoteDescription({ type: 'answer', sdp: body });
        attempt = 0;
        openEvents();
        return;
      }
      cleanup(false);
      if (resp.status === 401) {
        askPassword(body.includes('wrong'));
      } else if (resp.status === 404) {
        finish('invalid');
      } else if (resp.status === 429) {
        const wait = Number(resp.headers.get('Retry-After')) || 5;
        setState('throttled', `${MESSAGES.throttled} Try again in ${wait} s.`);
        retryTimer = setTimeout(() => askPassword(true), wait * 1000);
      } else if (resp.status === 422) {
        // No codec in common: retrying cannot help. The server's sentence
        // says what this browser offered and what would fix it.
        finish('noCodec', body || MESSAGES.noCodec);
      } else if (resp.status === 503) {
        setState(body.includes('full') ? 'full' : 'reconnecting', body.includes('full') ? MESSAGES.full : undefined);
        retryTimer = setTimeout(connect, 3000);
      } else {
        setState('error', `${MESSAGES.error} ${body}`);
        retryTimer = setTimeout(connect, 3000);
      }
    } catch (e) {
      if (conn === pc) scheduleReconnect();
    }
  }

  function openEvents() {
    if (!resource) return;
    const session = resource.split('/').pop();
    events = new EventSource(`${base}/events/${session}`);
    events.addEventListener('ended', () => finish('ended'));
    events.addEventListener('kicked', () => finish('kicked'));
  }

  // Frames on screen: the first one switches the page to live.
  function onFrame() {
    counters.framesRendered += 1;
    if (counters.firstFrameMs === null) counters.firstFrameMs = performance.now();
    if (state === 'waiting' || state === 'connecting' || state === 'reconnecting') setState('live');
    layout();
    video.requestVideoFrameCallback(onFrame);
  }
  if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) {
    video.requestVideoFrameCallback(onFrame);
  } else {
    video.addEventListener('playing', () => state !== 'live' && setState('live'));
  }
  video.addEventListener('resize', layout);

  // ---- statistics and skip-to-live ----
  let previous = null;
  let lateSeconds = 0;
  let latest = {};
  async function sampleStats() {
    if (!pc || pc.connectionState !== 'connected') return;
    const report = await pc.getStats();
    let inbound = null;
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') inbound = s;
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
    });
    if (!inbound) return;
    const codecStats = inbound.codecId ? report.get(inbound.codecId) : null;
    // "video/VP9" → "VP9"; H264 → "H.264" as the sharer's app says it.
    const codec = codecStats && codecStats.mimeType ? codecStats.mimeType.replace(/^video\//i, '').replace(/^H264$/i, 'H.264') : null;
    const now = inbound.timestamp;
    const p = previous;
    previous = inbound;
    if (!p || p.timestamp >= now) return;
    const dt = (now - p.timestamp) / 1000;
    const d = (k) => (inbound[k] ?? 0) - (p[k] ?? 0);
    const frames = d('framesDecoded');
    const emitted = d('jitterBufferEmittedCount');
    const received = d('packetsReceived');
    const lost = Math.max(0, d('packetsLost'));
    latest = {
      codec,
      width: inbound.frameWidth ?? 0,
      height: inbound.frameHeight ?? 0,
      fps: frames / dt,
      kbps: (d('bytesReceived') * 8) / dt / 1000,
      rttMs: pair && pair.currentRoundTripTime !== undefined ? pair.currentRoundTripTime * 1000 : null,
      lossPct: received + lost > 0 ? (100 * lost) / (received + lost) : 0,
      decodeMs: frames > 0 ? (1000 * d('totalDecodeTime')) / frames : 0,
      jitterMs: emitted > 0 ? (1000 * d('jitterBufferDelay')) / emitted : 0,
      framesDecoded: inbound.framesDecoded ?? 0,
      keyFramesDecoded: inbound.keyFramesDecoded ?? 0,
      framesDropped: inbound.framesDropped ?? 0,
      freezes: inbound.freezeCount ?? 0,
      freezeSeconds: inbound.totalFreezesDuration ?? 0,
      nacks: inbound.nackCount ?? 0,
      plis: inbound.pliCount ?? 0,
      packetsLost: inbound.packetsLost ?? 0,
    };
    // Hidden tabs render nothing (no video frame callbacks): decoding is proof enough.
    if (frames > 0 && state === 'waiting') setState('live');
    lateSeconds = latest.jitterMs > SKIP_TO_LIVE_MS ? lateSeconds + 1 : 0;
    if (lateSeconds >= SKIP_TO_LIVE_SECONDS && performance.now() - connectedAt > SKIP_TO_LIVE_HOLDOFF_MS) {
      // Browsers cannot flush a jitter buffer: a fresh connection starts at a
      // keyframe with an empty one.
      lateSeconds = 0;
      counters.skipsToLive += 1;
      previous = null;
      scheduleReconnect(0);
    }
    if (!statsBox.hidden) renderStats();
  }

  function renderStats() {
    const s = latest;
    const f = (v, digits = 0) => (v === null || v === undefined ? '–' : v.toFixed(digits));
    statsBox.textContent = [
      `codec       ${s.codec || '–'}`,
      `resolution  ${s.width || '–'}×${s.height || '–'}`,
      `fps         ${f(s.fps, 1)}`,
      `bitrate     ${f(s.kbps)} kbps`,
      `rtt         ${f(s.rttMs, 1)} ms`,
      `loss        ${f(s.lossPct, 1)} %`,
      `decode      ${f(s.decodeMs, 1)} ms`,
      `jitter buf  ${f(s.jitterMs, 1)} ms`,
      `dropped     ${s.framesDropped ?? 0}  freezes ${s.freezes ?? 0} (${f(s.freezeSeconds, 1)} s)`,
      `lost        ${s.packetsLost ?? 0} packets`,
      `nack / pli  ${s.nacks ?? 0} / ${s.plis ?? 0}`,
    ].join('\n');
  }
  setInterval(() => sampleStats().catch(() => {}), 1000);

  // ---- scaling, zoom and pan ----
  let mode = 'fit';
  let zoom = 1;
  let panX = 0;
  let panY = 0;
  let current = { x: 0, y: 0, s: 1 };

  function baseScale() {
    const vw = video.videoWidth;
    const vh = video.videoHeight;
    if (!vw || !vh) return 1;
    const W = stage.clientWidth;
    const H = stage.clientHeight;
    if (mode === 'fill') return Math.max(W / vw, H / vh);
    if (mode === 'native') return 1 / (window.devicePixelRatio || 1);
    return Math.min(W / vw, H / vh);
  }

  function layout() {
    const vw = video.videoWidth || 1;
    const vh = video.videoHeight || 1;
    const W = stage.clientWidth;
    const H = stage.clientHeight;
    const s = baseScale() * zoom;
    const w = vw * s;
    const h = vh * s;
    // Centre, then pan; never let the picture leave the window.
    let x = (W - w) / 2 + panX;
    let y = (H - h) / 2 + panY;
    x = w > W ? Math.min(0, Math.max(W - w, x)) : (W - w) / 2;
    y = h > H ? Math.min(0, Math.max(H - h, y)) : (H - h) / 2;
    panX = x - (W - w) / 2;
    panY = y - (H - h) / 2;
    video.style.width = `${vw}px`;
    video.style.height = `${vh}px`;
    video.style.transform = `translate(${x}px, ${y}px) scale(${s})`;
    video.classList.toggle('pixelated', s >= 2);
    current = { x, y, s };
  }

  function setMode(next) {
    mode = next;
    zoom = 1;
    panX = 0;
    panY = 0;
    layout();
  }

  function zoomAt(factor, px, py) {
    const next = Math.min(16, Math.max(0.1, zoom * factor));
    const { x, y, s } = current;
    const u = (px - x) / s;
    const v = (py - y) / s;
    zoom = next;
    const s2 = baseScale() * zoom;
    const vw = video.videoWidth || 1;
    const vh = video.videoHeight || 1;
    panX = px - u * s2 - (stage.clientWidth - vw * s2) / 2;
    panY = py - v * s2 - (stage.clientHeight - vh * s2) / 2;
    layout();
  }

  window.addEventListener('resize', layout);
  stage.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    zoomAt(Math.exp(-ev.deltaY * 0.0015), ev.clientX, ev.clientY);
  }, { passive: false });

  const pointers = new Map();
  let pinch = null;
  stage.addEventListener('pointerdown', (ev) => {
    stage.setPointerCapture(ev.pointerId);
    pointers.set(ev.pointerId, { x: ev.clientX, y: ev.clientY });
    stage.classList.add('dragging');
  });
  stage.addEventListener('pointermove', (ev) => {
    const prev = pointers.get(ev.pointerId);
    if (!prev) return;
    const point = { x: ev.clientX, y: ev.clientY };
    pointers.set(ev.pointerId, point);
    if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      const dist = Math.hypot(a.x - b.x, a.y - b.y);
      if (pinch) zoomAt(dist / pinch, (a.x + b.x) / 2, (a.y + b.y) / 2);
      pinch = dist;
    } else if (pointers.size === 1) {
      panX += point.x - prev.x;
      panY += point.y - prev.y;
      layout();
    }
  });
  const release = (ev) => {
    pointers.delete(ev.pointerId);
    if (pointers.size < 2) pinch = null;
    if (pointers.size === 0) stage.classList.remove('dragging');
  };
  stage.addEventListener('pointerup', release);
  stage.addEventListener('pointercancel', release);

  function toggleFullscreen() {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else document.documentElement.requestFullscreen().catch(() => {});
  }
  stage.addEventListener('dblclick', toggleFullscreen);

  function toggleStats() {
    statsBox.hidden = !statsBox.hidden;
    if (!statsBox.hidden) renderStats();
  }

  const actions = {
    fit: () => setMode('fit'),
    fill: () => setMode('fill'),
    native: () => setMode('native'),
    stats: toggleStats,
    fullscreen: toggleFullscreen,
    help: () => { helpBox.hidden = !helpBox.hidden; },
  };
  document.querySelectorAll('#toolbar button').forEach((b) => b.addEventListener('click', () => actions[b.dataset.action]()));

  document.addEventListener('keydown', (ev) => {
    if (ev.target === passwordInput) return;
    const step = 60;
    const handled = {
      f: actions.fullscreen,
      0: actions.fit,
      1: actions.native,
      2: actions.fill,
      '+': () => zoomAt(1.25, stage.clientWidth / 2, stage.clientHeight / 2),
      '=': () => zoomAt(1.25, stage.clientWidth / 2, stage.clientHeight / 2),
      '-': () => zoomAt(0.8, stage.clientWidth / 2, stage.clientHeight / 2),
      ArrowLeft: () => { panX += step; layout(); },
      ArrowRight: () => { panX -= step; layout(); },
      ArrowUp: () => { panY += step; layout(); },
      ArrowDown: () => { panY -= step; layout(); },
      s: actions.stats,
      '?': actions.help,
      Escape: () => { helpBox.hidden = true; },
    }[ev.key];
    if (handled) {
      ev.preventDefault();
      handled();
    }
  });

  window.addEventListener('pagehide', () => cleanup(true));

  // For tests and curious users: the page's state and latest statistics.
  window.peep = {
    state: () => state,
    stats: () => ({ ...latest, ...counters }),
    scale: () => ({ mode, zoom, ...current }),
  };

  if (typeof window.RTCPeerConnection !== 'function') {
    // A browser without WebRTC (e.g. a WebKit build without it): say so
    // instead of "Connecting…" for ever.
    finish('unsupported');
  } else {
    connect();
  }
})();
