"use strict";
// Prompt text is only ever put on the page with textContent, never parsed as HTML.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "longlive-steer";
const POLL_MS = 400;

function readToken() {
  const match = /(?:^#|&)steer=([A-Za-z0-9_-]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, match[1]);
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

let token = readToken();
let paused = false;

function setSteering(on) {
  for (const id of ["prompt", "policy", "send", "pause"]) $(id).disabled = !on;
  $("mode").textContent = on ? "steering" : "watching";
  $("mode").className = "badge " + (on ? "steering" : "watching");
}

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

async function send(message) {
  let response;
  try {
    response = await fetch("/api/command", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Longlive-Token": token || "" },
      body: JSON.stringify(message),
    });
  } catch {
    say("the server is not answering", true);
    return null;
  }
  const data = await response.json().catch(() => ({}));
  if (response.status === 403) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    setSteering(false);
  }
  if (!response.ok) say(data.error || `refused (${response.status})`, true);
  return response.ok ? data : null;
}

function seconds(x) {
  return x === null || x === undefined ? "-" : `${x.toFixed(2)} s`;
}

function show(state) {
  $("state").textContent = state.state;
  $("state").className = "badge " + state.state;
  $("fps").textContent = `${state.fps.toFixed(1)} / ${state.target_fps}`;
  $("lag").textContent = `${seconds(state.lag_s)} / ${seconds(state.shown_lag_s)}`;
  $("time").textContent = `${state.video_s.toFixed(1)} s of ${state.limit_s.toFixed(0)} s`;
  $("speed").textContent = state.realtime === null ? "-" : `${state.realtime.toFixed(2)}x`;
  $("viewers").textContent = String(state.viewers);
  $("current").textContent = state.prompt || "(waiting for a first prompt)";
  paused = state.state === "paused";
  $("pause").textContent = paused ? "Resume" : "Pause";
  const list = $("changes");
  const items = state.changes.slice().reverse().map((change) => {
    const item = document.createElement("li");
    const meta = document.createElement("span");
    meta.className = "meta";
    const lag = change.lag_s === null || change.prompt === 0 ? "" : `, lag ${seconds(change.lag_s)}`;
    meta.textContent = `${change.landed_s.toFixed(2)} s ${change.policy || "start"}${lag}`;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = change.text;
    item.append(meta, text);
    return item;
  });
  list.replaceChildren(...items);
  list.start = state.changes.length ? state.changes[state.changes.length - 1].prompt : 0;
}

async function poll() {
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    show(await response.json());
  } catch {
    $("state").textContent = "disconnected";
    $("state").className = "badge disconnected";
  }
  setTimeout(poll, POLL_MS);
}

$("steer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text) return;
  const sent = await send({ type: "prompt", text, policy: $("policy").value });
  if (sent) {
    $("prompt").value = "";
    say(`queued; lands at latent frame ${sent.boundary_latent} or the next free chunk`);
  }
});

$("pause").addEventListener("click", async () => {
  if (await send({ type: paused ? "resume" : "pause" })) say(paused ? "resuming" : "pausing");
});

$("video").addEventListener("error", () => {
  setTimeout(() => { $("video").src = `/stream?${Date.now()}`; }, 1000);
});

setSteering(Boolean(token));
if (!token) say("watching: the steering address is printed in the terminal");
poll();
