// The drawing page: draw (or upload) a digit, ask POST v1/predict, show the answer.
// Plain JavaScript, no build step, no external assets. URLs are relative so the page
// also works behind a path prefix (an ingress serving the gateway under /mnist/).
"use strict";

(() => {
  const PREDICT_URL = "v1/predict";
  const MODELS_URL = "v1/models";
  const PREDICT_DELAY_MS = 300;   // wait this long after a stroke ends: one request per pause
  const STROKE_FRACTION = 1 / 14; // marker width relative to the canvas side
  const INK = "#111111";          // dark ink on white paper; the gateway flips the polarity
  const PAPER = "#ffffff";
  const NUM_CLASSES = 10;
  const NOT_A_DIGIT = "?";        // in the digit's place when the image holds none

  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const pad = $("pad");
  const padHint = $("pad-hint");
  const result = document.querySelector(".result");
  const digitOut = $("digit");
  const statusLine = $("status");
  const sourceLine = $("source");
  const sourceImage = $("source-image");
  const sourceName = $("source-name");
  const errorBox = $("error");
  const errorMessage = $("error-message");
  const retryButton = $("retry");
  const modelLabel = $("model");
  const fileInput = $("file");

  let inked = false;
  let activePointer = null;
  let lastPoint = null;
  let predictTimer = 0;
  let inflight = null;      // AbortController of the request whose answer we wait for
  let lastRequest = null;   // {blob, name} to resend on "Try again"
  let sourceUrl = null;     // object URL of the uploaded file shown as a thumbnail
  let servedModel = null;   // {name, version} of the model that answered last
  let backendKind = "";     // from GET v1/models: embedded, grpc or rest

  // ---- Drawing ---------------------------------------------------------------------

  function fillPaper() {
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = PAPER;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.restore();
  }

  function setPen() {
    ctx.strokeStyle = INK;
    ctx.fillStyle = INK;
    ctx.lineWidth = Math.max(4, canvas.width * STROKE_FRACTION);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
  }

  // Back the canvas with one pixel per device pixel so strokes stay sharp on high-DPI
  // screens; keep what is drawn when the layout changes size.
  function fitCanvasToLayout() {
    const side = Math.round(canvas.clientWidth * (window.devicePixelRatio || 1));
    if (side === 0 || side === canvas.width) return;
    let previous = null;
    if (inked) {
      previous = document.createElement("canvas");
      previous.width = canvas.width;
      previous.height = canvas.height;
      previous.getContext("2d").drawImage(canvas, 0, 0);
    }
    canvas.width = side;
    canvas.height = side;
    fillPaper();
    if (previous) ctx.drawImage(previous, 0, 0, side, side);
    setPen();
  }

  function canvasPoint(event) {
    const rect = canvas.getBoundingClientRect();
    const scale = canvas.width / canvas.clientWidth;
    return {
      x: (event.clientX - rect.left - canvas.clientLeft) * scale,
      y: (event.clientY - rect.top - canvas.clientTop) * scale,
    };
  }

  function dot(point) {
    ctx.beginPath();
    ctx.arc(point.x, point.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
  }

  function line(from, to) {
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
  }

  function markInked() {
    inked = true;
    padHint.hidden = true;
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (activePointer !== null || event.button !== 0) return;
    event.preventDefault();
    activePointer = event.pointerId;
    canvas.setPointerCapture(event.pointerId);
    clearTimeout(predictTimer);
    lastPoint = canvasPoint(event);
    dot(lastPoint);
    markInked();
  });

  canvas.addEventListener("pointermove", (event) => {
    if (event.pointerId !== activePointer) return;
    // Coalesced events carry the intermediate positions a fast stroke moves through.
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const each of events.length ? events : [event]) {
      const point = canvasPoint(each);
      line(lastPoint, point);
      lastPoint = point;
    }
  });

  function endStroke(event) {
    if (event.pointerId !== activePointer) return;
    activePointer = null;
    lastPoint = null;
    clearTimeout(predictTimer);
    predictTimer = setTimeout(predictDrawing, PREDICT_DELAY_MS);
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  canvas.addEventListener("lostpointercapture", endStroke);

  function predictDrawing() {
    if (!inked) return;
    canvas.toBlob((blob) => {
      if (blob && inked) predict(blob, "drawing.png", null);
    }, "image/png");
  }

  function clearAll() {
    clearTimeout(predictTimer);
    if (inflight) inflight.abort();
    inflight = null;
    lastRequest = null;
    inked = false;
    padHint.hidden = false;
    fillPaper();
    showIdle();
  }

  // ---- Talking to the gateway --------------------------------------------------------

  async function predict(blob, name, previewUrl) {
    if (inflight) inflight.abort();
    const controller = new AbortController();
    inflight = controller;
    lastRequest = { blob, name, previewUrl };
    result.dataset.state = "predicting";

    const form = new FormData();
    form.append("file", blob, name);
    try {
      const response = await fetch(PREDICT_URL, {
        method: "POST",
        body: form,
        headers: { Accept: "application/json" },
        signal: controller.signal,
      });
      const body = await response.json().catch(() => null);
      if (controller !== inflight) return; // a newer request superseded this one
      if (response.ok && body && Array.isArray(body.predictions) && body.predictions.length) {
        showPrediction(body.predictions[0], body.model, name, previewUrl);
      } else {
        showError(describeFailure(response, body, previewUrl !== null));
      }
    } catch (error) {
      if (error.name === "AbortError" || controller !== inflight) return;
      showError(
        "Cannot reach the prediction service. Check that the gateway is running, then try again.",
      );
    } finally {
      if (controller === inflight) inflight = null;
    }
  }

  function describeFailure(response, body, isUpload) {
    const error = (body && body.error) || {};
    const detail = error.message ? ` (${error.message})` : "";
    switch (response.status) {
      case 503: {
        const wait = Number.parseInt(response.headers.get("Retry-After") || "", 10);
        const when = Number.isFinite(wait) && wait > 0 ? `in ${wait} s` : "in a moment";
        return `The prediction service is unavailable right now: no model is ready to answer. Try again ${when}.`;
      }
      case 502:
        return "The model server failed to answer. Try again.";
      case 504:
        return "The model took too long to answer. Try again.";
      case 422:
        if (error.code === "no_ink") {
          return isUpload
            ? "That image is one flat colour: there is no digit in it."
            : "No ink found: draw a digit in the white box.";
        }
        return `The service could not use this request${detail}.`;
      case 400:
      case 413:
      case 415:
        return `That file cannot be used${detail}.`;
      default: {
        const id = error.request_id ? ` Request id: ${error.request_id}.` : "";
        return `Something went wrong (HTTP ${response.status}${detail}).${id}`;
      }
    }
  }

  async function loadModelInfo() {
    try {
      const response = await fetch(MODELS_URL, { headers: { Accept: "application/json" } });
      if (!response.ok) {
        modelLabel.textContent =
          response.status === 503 ? "not loaded (service unavailable)" : "unknown";
        return;
      }
      const body = await response.json();
      backendKind = body.backend || "";
      // A prediction that answered first already named the version that served it.
      showModel(servedModel || { name: body.name, version: body.version });
    } catch {
      modelLabel.textContent = "unknown (cannot reach the service)";
    }
  }

  function showModel(model) {
    servedModel = model;
    const backend = backendKind ? ` · ${backendKind} backend` : "";
    modelLabel.textContent = `${model.name}, version ${model.version}${backend}`;
  }

  // ---- Showing results ---------------------------------------------------------------

  const percent = (p) => `${(Math.floor(p * 1000) / 10).toFixed(1)}%`;

  function buildProbabilityRows() {
    const rows = $("probability-rows");
    for (let digit = 0; digit < NUM_CLASSES; digit += 1) {
      const row = document.createElement("tr");
      row.dataset.digit = String(digit);
      const head = document.createElement("th");
      head.scope = "row";
      head.textContent = String(digit);
      const cell = document.createElement("td");
      const bars = document.createElement("div");
      bars.className = "bar-cell";
      const track = document.createElement("span");
      track.className = "bar-track";
      track.setAttribute("aria-hidden", "true");
      const bar = document.createElement("span");
      bar.className = "bar";
      track.append(bar);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = "–";
      bars.append(track, value);
      cell.append(bars);
      row.append(head, cell);
      rows.append(row);
    }
  }

  function setProbabilities(probabilities, top) {
    document.querySelectorAll("#probability-rows tr").forEach((row, digit) => {
      const p = probabilities ? probabilities[digit] : null;
      row.classList.toggle("top", digit === top);
      row.querySelector(".bar").style.width = p === null ? "0" : `${(p * 100).toFixed(1)}%`;
      row.querySelector(".value").textContent = p === null ? "–" : percent(p);
    });
  }

  function showSource(name, previewUrl) {
    if (sourceUrl && sourceUrl !== previewUrl) URL.revokeObjectURL(sourceUrl);
    sourceUrl = previewUrl;
    sourceLine.hidden = false;
    sourceImage.hidden = previewUrl === null;
    if (previewUrl) sourceImage.src = previewUrl;
    sourceName.textContent = previewUrl ? `From the file ${name}` : "From your drawing";
  }

  function showPrediction(prediction, model, name, previewUrl) {
    errorBox.hidden = true;
    // is_digit is false when the model judges the image no digit at all: its likeliest
    // digit is then no answer, and is not shown as one. (Absent from older gateways.)
    const isDigit = prediction.is_digit !== false;
    digitOut.textContent = isDigit ? String(prediction.digit) : NOT_A_DIGIT;
    digitOut.classList.remove("empty");
    digitOut.classList.toggle("not-digit", !isDigit);
    setProbabilities(prediction.probabilities, isDigit ? prediction.digit : -1);
    showSource(name, previewUrl);
    let version = "";
    if (model && model.version !== undefined) {
      version = ` (model version ${model.version})`;
      showModel(model);
    }
    if (isDigit) {
      statusLine.textContent =
        `The model reads the digit ${prediction.digit} with ${percent(prediction.confidence)} confidence${version}.`;
    } else {
      const score = typeof prediction.digit_score === "number"
        ? ` (digit score ${prediction.digit_score.toFixed(2)})` : "";
      statusLine.textContent =
        `Not a digit${score}: the model does not see a digit from 0 to 9 here${version}.`;
    }
    result.dataset.verdict = isDigit ? "digit" : "not-a-digit";
    result.dataset.state = "done";
  }

  function showError(message) {
    digitOut.textContent = "–";
    digitOut.classList.remove("not-digit");
    digitOut.classList.add("empty");
    setProbabilities(null, -1);
    sourceLine.hidden = true;
    statusLine.textContent = "No prediction.";
    errorMessage.textContent = message;
    retryButton.hidden = lastRequest === null;
    errorBox.hidden = false;
    delete result.dataset.verdict;
    result.dataset.state = "error";
  }

  function showIdle() {
    digitOut.textContent = "–";
    digitOut.classList.remove("not-digit");
    digitOut.classList.add("empty");
    setProbabilities(null, -1);
    sourceLine.hidden = true;
    errorBox.hidden = true;
    statusLine.textContent = "Draw a digit to see what the model thinks it is.";
    delete result.dataset.verdict;
    result.dataset.state = "idle";
  }

  // ---- Uploads -----------------------------------------------------------------------

  function predictFile(file) {
    if (!file) return;
    clearTimeout(predictTimer);
    predict(file, file.name, URL.createObjectURL(file));
  }

  fileInput.addEventListener("change", () => {
    predictFile(fileInput.files[0]);
    fileInput.value = ""; // choosing the same file again still triggers a prediction
  });

  pad.addEventListener("dragover", (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    pad.classList.add("dragging");
  });
  pad.addEventListener("dragleave", () => pad.classList.remove("dragging"));
  pad.addEventListener("drop", (event) => {
    event.preventDefault();
    pad.classList.remove("dragging");
    predictFile(event.dataTransfer.files[0]);
  });
  // A file dropped next to the drawing area must not navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  // ---- Start -------------------------------------------------------------------------

  $("clear").addEventListener("click", clearAll);
  retryButton.addEventListener("click", () => {
    if (lastRequest) predict(lastRequest.blob, lastRequest.name, lastRequest.previewUrl);
  });

  buildProbabilityRows();
  fitCanvasToLayout();
  new ResizeObserver(fitCanvasToLayout).observe(canvas);
  window.addEventListener("resize", fitCanvasToLayout); // zoom changes devicePixelRatio
  showIdle();
  loadModelInfo();
})();
