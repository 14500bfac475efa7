// The page: send the dropped or chosen image to this server's /api/predict and draw the answer.
// The server holds the model server's token; nothing here needs or sees it. Text from answers is
// set with textContent only, so a class name can never become markup.
"use strict";

const $ = (id) => document.getElementById(id);
let config = null;
let labels = {};
let lastFile = null;
let originalUrl = null;

function show(element, visible) {
  element.hidden = !visible;
}

function setError(message) {
  $("error").textContent = message || "";
  show($("error"), Boolean(message));
}

function mib(bytes) {
  return `${(bytes / 1048576).toFixed(bytes < 1048576 ? 2 : 1)} MiB`;
}

async function loadConfig() {
  try {
    const response = await fetch("/api/config");
    config = await response.json();
  } catch (error) {
    setError(`this page's server is not answering (${error.message}); reload the page`);
    return;
  }
  labels = Object.fromEntries(config.outputs);
  $("model").textContent = `model: ${config.model}`;
  $("formats").textContent = `PNG, JPEG, WebP or TIFF, up to ${mib(config.max_upload_bytes)}`;
  for (const [value, label] of config.outputs) {
    $("output").append(new Option(label, value));
  }
}

function clearResult() {
  show($("result"), false);
  show($("topk"), false);
  show($("details"), false);
  show($("legend"), false);
  $("result").removeAttribute("src");
}

function showOriginal(file) {
  if (originalUrl) URL.revokeObjectURL(originalUrl);
  originalUrl = URL.createObjectURL(file);
  $("original").src = originalUrl;
  $("original").alt = file.name;
  show($("original"), true);
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body.error) return body.error;
  } catch (ignored) {
    // not JSON: a proxy or the WSGI server itself answered
  }
  if (response.status === 413) {
    return `the file is too large; this page accepts images up to ${mib(config.max_upload_bytes)}`;
  }
  return `the server answered ${response.status} ${response.statusText}`;
}

async function predict(file) {
  await ready;
  lastFile = file;
  setError("");
  clearResult();
  showOriginal(file);
  const output = $("output").value;
  $("status").textContent = `sending ${file.name} (${mib(file.size)}) for ${output}…`;
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("output", output);
  const started = performance.now();
  let response;
  try {
    response = await fetch("/api/predict", { method: "POST", body: form });
  } catch (error) {
    $("status").textContent = "";
    setError(`could not reach this page's server (${error.message}); check the connection and try again`);
    return;
  }
  const roundTrip = performance.now() - started;
  if (!response.ok) {
    $("status").textContent = "";
    setError(await errorMessage(response));
    return;
  }
  const answer = await response.json();
  $("status").textContent = `${file.name}: done`;
  draw(answer, roundTrip);
}

function draw(answer, roundTrip) {
  $("result-caption").textContent = `Result: ${labels[answer.output] || answer.output}`;
  if (answer.predictions) {
    drawTopK(answer.predictions);
  } else {
    $("result").src = answer.image;
    show($("result"), true);
    drawLegend(answer.classes);
  }
  $("meta").textContent = `model ${answer.model}, version ${answer.version || "unknown"} · ` +
    `${answer.latency_ms.toFixed(0)} ms at the model server, ${roundTrip.toFixed(0)} ms round trip`;
  show($("details"), true);
}

function drawLegend(classes) {
  const body = $("legend").querySelector("tbody");
  body.replaceChildren();
  for (const entry of classes) {
    const row = body.insertRow();
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.backgroundColor = entry.colour;
    const name = row.insertCell();
    name.append(swatch, entry.name);
    const fraction = row.insertCell();
    fraction.className = "fraction";
    fraction.textContent = `${(entry.fraction * 100).toFixed(1)} %`;
  }
  show($("legend"), classes.length > 0);
}

function drawTopK(predictions) {
  const list = $("topk");
  list.replaceChildren();
  for (const entry of predictions) {
    const item = document.createElement("li");
    item.textContent = `${entry.name}: ${(entry.probability * 100).toFixed(1)} %`;
    list.append(item);
  }
  show(list, true);
}

function listen() {
  const drop = $("drop");
  // not every image the server takes can be previewed (TIFF), nor is every dropped file an image
  $("original").addEventListener("error", () => show($("original"), false));
  $("file").addEventListener("change", () => {
    if ($("file").files.length) predict($("file").files[0]);
  });
  $("output").addEventListener("change", () => {
    if (lastFile) predict(lastFile);
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  // a file dropped beside the zone would otherwise replace the page with the file itself
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const files = event.dataTransfer.files;
    if (files.length) predict(files[0]);
  });
}

const ready = loadConfig();
listen();
