// Shared page behaviour: polling while visible, the error banner, the confirm-with-reason dialog.

// Poll `fn` every `ms` while the tab is visible; returns a stop function. Errors are shown, polling goes on.
export function poll(fn, ms) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try { await fn(); } catch (error) { showBanner(error.message); }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

export function showBanner(message, kind = "error") {
  const el = document.getElementById("banner");
  el.textContent = message;
  el.className = `banner ${kind}`;
  el.hidden = !message;
}

// A confirmation that asks for a reason; resolves to the reason, or null when cancelled.
export function confirmWithReason(title, text, okLabel = "Confirm", danger = false) {
  const dialog = document.getElementById("confirm");
  const reason = document.getElementById("confirm-reason");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  ok.textContent = okLabel;
  ok.className = danger ? "danger" : "";
  reason.value = "";
  document.getElementById("confirm-error").hidden = true;
  return new Promise((resolve) => {
    const form = document.getElementById("confirm-form");
    const cancel = document.getElementById("confirm-cancel");
    const done = (value) => {
      form.removeEventListener("submit", submit);
      cancel.removeEventListener("click", close);
      dialog.close();
      resolve(value);
    };
    const submit = (event) => {
      event.preventDefault();
      const value = reason.value.trim();
      if (!value) {
        const err = document.getElementById("confirm-error");
        err.textContent = "A reason is required.";
        err.hidden = false;
        return;
      }
      done(value);
    };
    const close = () => done(null);
    form.addEventListener("submit", submit);
    cancel.addEventListener("click", close);
    dialog.addEventListener("cancel", close, { once: true });
    dialog.showModal();
    reason.focus();
  });
}
