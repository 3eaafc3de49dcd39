// Replays a call in the browser: prompts as speech clips rendered by the server, keys as DTMF
// dual tones made here with WebAudio, on the call's own clock; the timeline follows along.
// The plan (what sounds when) comes from POST .../replay, which the server audits.
(function () {
  "use strict";
  var root = document.getElementById("replay");
  if (!root) { return; }
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var playButton = document.getElementById("play");
  var clock = document.getElementById("clock");
  var seek = document.getElementById("seek");
  var full = document.getElementById("full");
  var status = document.getElementById("replay-status");
  var speedButtons = Array.prototype.slice.call(root.querySelectorAll(".speed"));
  var rows = {};
  Array.prototype.forEach.call(document.querySelectorAll("#timeline tr[data-index]"), function (row) {
    rows[row.dataset.index] = row;
  });

  var TONE = 0.10, PER_KEY = 0.18, MASKED_HZ = 1000;  // as in replay.py
  var plan = null, loading = null, audioCtx = null;
  var playing = false, rate = 1, position = 0, anchorPosition = 0, anchorTime = 0, frame = 0;
  var sounding = new Map();   // cue -> {stop: function}
  var clips = {};             // cue index -> HTMLAudioElement
  var current = null;         // the highlighted row

  function now() {
    return playing ? anchorPosition + (performance.now() - anchorTime) / 1000 * rate : position;
  }

  function fmt(seconds) {
    var m = Math.floor(seconds / 60), s = seconds - m * 60;
    return m + ":" + (s < 10 ? "0" : "") + s.toFixed(1);
  }

  function load() {
    if (loading) { return loading; }
    status.textContent = "Preparing the replay…";
    var body = new URLSearchParams({ policy: full.checked ? "full" : "call" });
    loading = fetch(root.dataset.plan, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf }
    }).then(function (response) {
      if (!response.ok) { throw new Error("the server answered " + response.status); }
      return response.json();
    }).then(function (data) {
      plan = data;
      clips = {};
      plan.cues.forEach(function (cue) {
        if (cue.kind === "prompt" && cue.audio && cue.length > 0) {
          var clip = new Audio(cue.audio);
          clip.preload = "auto";
          clips[cue.index] = clip;
        }
      });
      seek.max = plan.length.toFixed(1);
      seek.disabled = false;
      root.dataset.length = plan.length;
      status.textContent = plan.speech
        ? "Replaying in the call's " + (plan.policy === "full" ? "order, prompts in full" : "own timing") +
          ": prompts as speech, keys as DTMF tones (masked keys as a plain beep)."
        : "Audio for prompts is unavailable on this server (espeak-ng is not installed): the replay runs silently through the prompts, keys still sound.";
      return plan;
    }).catch(function (error) {
      loading = null;
      status.textContent = "The replay could not be prepared: " + error.message;
      throw error;
    });
    return loading;
  }

  function context() {
    if (!audioCtx) {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      audioCtx = Ctx ? new Ctx() : null;
    }
    if (audioCtx && audioCtx.state === "suspended") { audioCtx.resume(); }
    return audioCtx;
  }

  // Sound `keys` (from `into` seconds into them) as DTMF tones: two sines per key.
  function tones(keys, into) {
    var ctx = context();
    if (!ctx) { return { stop: function () {} }; }
    var nodes = [], t0 = ctx.currentTime;
    for (var i = 0; i < keys.length; i++) {
      var begin = i * PER_KEY - into, end = begin + TONE;
      if (end <= 0) { continue; }
      var pair = keys[i] === "?" ? [MASKED_HZ] : plan.dtmf[keys[i]];
      if (!pair) { continue; }
      var gain = ctx.createGain();
      gain.gain.value = 0.18;
      gain.connect(ctx.destination);
      pair.forEach(function (hz) {
        var osc = ctx.createOscillator();
        osc.frequency.value = hz;
        osc.connect(gain);
        osc.start(t0 + Math.max(0, begin) / rate);
        osc.stop(t0 + end / rate);
        nodes.push(osc);
      });
    }
    return { stop: function () { nodes.forEach(function (n) { try { n.stop(); } catch (e) { /* ended */ } }); } };
  }

  function speak(cue, into) {
    var clip = clips[cue.index];
    if (!clip) { return { stop: function () {} }; }
    try { clip.currentTime = into; } catch (e) { /* not loaded yet: plays from the start */ }
    clip.playbackRate = rate;
    var started = clip.play();
    if (started && started.catch) { started.catch(function () { /* no audio device: the clock goes on */ }); }
    return { stop: function () { clip.pause(); }, clip: clip };
  }

  function silenceAll() {
    sounding.forEach(function (sound) { sound.stop(); });
    sounding.clear();
  }

  // Start what should sound at `at` and stop what should not.
  function sync(at) {
    plan.cues.forEach(function (cue) {
      if (cue.length <= 0) { return; }
      var inside = at >= cue.start && at < cue.start + cue.length;
      if (inside && !sounding.has(cue) && playing) {
        var into = at - cue.start;
        sounding.set(cue, cue.kind === "key" ? tones(cue.tones, into) : speak(cue, into));
      } else if (!inside && sounding.has(cue)) {
        sounding.get(cue).stop();
        sounding.delete(cue);
      }
    });
  }

  function highlight(at) {
    var active = null;
    plan.cues.forEach(function (cue) {
      if (cue.start <= at + 1e-6) { active = cue; }
    });
    var index = active ? String(active.index) : null;
    Object.keys(rows).forEach(function (key) {
      rows[key].classList.toggle("played", active !== null && Number(key) < active.index);
    });
    var row = index !== null ? rows[index] : null;
    if (row !== current) {
      if (current) { current.classList.remove("playing"); }
      if (row) {
        row.classList.add("playing");
        var box = row.getBoundingClientRect();
        if (box.top < 80 || box.bottom > window.innerHeight) { row.scrollIntoView({ block: "center" }); }
      }
      current = row;
      root.dataset.step = index === null ? "" : index;
    }
  }

  function render(at) {
    clock.textContent = fmt(at) + " / " + fmt(plan.length);
    if (document.activeElement !== seek) { seek.value = at.toFixed(1); }
    root.dataset.position = at.toFixed(2);
    highlight(at);
  }

  function tick() {
    var at = now();
    if (at >= plan.length) {
      pause();
      position = plan.length;
      render(position);
      root.dataset.state = "ended";
      return;
    }
    sync(at);
    render(at);
    frame = requestAnimationFrame(tick);
  }

  function play() {
    load().then(function () {
      if (position >= plan.length) { position = 0; }
      context();
      playing = true;
      anchorPosition = position;
      anchorTime = performance.now();
      root.dataset.state = "playing";
      playButton.textContent = "❚❚ Pause";
      playButton.setAttribute("aria-label", "Pause");
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(tick);
    });
  }

  function pause() {
    if (playing) { position = now(); }
    playing = false;
    cancelAnimationFrame(frame);
    silenceAll();
    root.dataset.state = "paused";
    playButton.textContent = "▶ Play";
    playButton.setAttribute("aria-label", "Play");
  }

  function jump(to) {
    if (!plan) { return; }
    to = Math.max(0, Math.min(plan.length, to));
    silenceAll();
    position = to;
    anchorPosition = to;
    anchorTime = performance.now();
    render(to);
  }

  playButton.addEventListener("click", function () { if (playing) { pause(); } else { play(); } });
  seek.addEventListener("input", function () { jump(Number(seek.value)); });
  speedButtons.forEach(function (button) {
    button.addEventListener("click", function () {
      var at = now();
      rate = Number(button.dataset.rate);
      anchorPosition = at;
      anchorTime = performance.now();
      if (!playing) { position = at; }
      speedButtons.forEach(function (b) { b.setAttribute("aria-pressed", String(b === button)); });
      silenceAll();  // restarted at the new speed by the next tick
      root.dataset.rate = String(rate);
    });
  });
  full.addEventListener("change", function () {
    var wasPlaying = playing;
    pause();
    plan = null;
    loading = null;
    position = 0;
    if (wasPlaying) { play(); } else { load().then(function () { render(0); }); }
  });
  Object.keys(rows).forEach(function (key) {
    rows[key].addEventListener("click", function () {
      load().then(function () {
        var cue = plan.cues.filter(function (c) { return String(c.index) === key; })[0];
        if (cue) { jump(cue.start); }
      });
    });
  });
})();
