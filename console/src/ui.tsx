/** Small pieces every page uses: a labelled field, a refusal next to its control, a busy button, announcements. */
import { CmkError } from '../../common/errors';
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api';

let announceTo: ((text: string) => void) | null = null;

/** Says `text` to screen readers (a polite live region in the layout) and shows it in the status bar. */
export function announce(text: string): void {
  announceTo?.(text);
}

export function Announcer() {
  const [text, setText] = useState('');
  useEffect(() => {
    announceTo = setText;
    return () => {
      announceTo = null;
    };
  }, []);
  return (
    <p class="status" role="status" aria-live="polite">
      {text}
    </p>
  );
}

let ids = 0;
export const useId = (prefix: string) => useRef(`${prefix}-${++ids}`).current;

export function Field(props: { label: string; children: (id: string) => ComponentChildren; hint?: string }) {
  const id = useId('f');
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      {props.children(id)}
      {props.hint ? <small id={`${id}-hint`}>{props.hint}</small> : null}
    </div>
  );
}

/** The service's sentences that name a CLI flag, said as the console asks for the same thing. */
const CONSOLE_SENTENCES: Record<string, string> = {
  TENANT_NAME_MISMATCH: "Type the tenant's display name exactly as it is written (case and spaces included).",
};

/** The service's sentence for `code`, or the console's own where the service's names a CLI flag. */
export function consoleSentence(code: string | undefined, said: string): string {
  return code && CONSOLE_SENTENCES[code] && /(^|\s)--[a-z]/.test(said) ? CONSOLE_SENTENCES[code] : said;
}

/** A refusal: its code and sentence, read out when it appears. */
export function Refusal({ error }: { error: unknown }) {
  if (!error) return null;
  const code = error instanceof ApiError ? error.code : (error as { code?: string }).code;
  const said = error instanceof Error ? error.message : String(error);
  const message = consoleSentence(code, said);
  return (
    <p class="refusal" role="alert">
      {code ? <code>{code}</code> : null} {message}
    </p>
  );
}

/** An action's state: what it is doing, its refusal, and a runner that keeps both. */
export function useAction<A extends unknown[]>(run: (...args: A) => Promise<string | void>) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const go = useCallback(
    async (...args: A) => {
      setBusy(true);
      setError(null);
      setDone(null);
      try {
        const said = await run(...args);
        if (said) {
          setDone(said);
          announce(said);
        }
      } catch (err) {
        setError(err);
        announce(`Refused: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        setBusy(false);
      }
    },
    [run],
  );
  return { busy, error, done, go, setError };
}

export function Done({ text }: { text: string | null }) {
  return text ? <p class="done">{text}</p> : null;
}

export function Section(props: { title: string; children: ComponentChildren; id?: string }) {
  const made = useId('s');
  const id = props.id ?? made;
  return (
    <section aria-labelledby={id} class="card">
      <h2 id={id}>{props.title}</h2>
      {props.children}
    </section>
  );
}

/** Reads a file the user picked, refusing anything over 64 KiB before it is read (no key file is that large). */
export async function readPicked(input: HTMLInputElement | null): Promise<{ name: string; bytes: Uint8Array } | null> {
  const file = input?.files?.[0];
  if (!file) return null;
  if (file.size > 64 * 1024) throw new CmkError('INVALID_KEY_FILE', `${file.name} is larger than 64 KiB; no key file is that large.`);
  return { name: file.name, bytes: new Uint8Array(await file.arrayBuffer()) };
}

/** A loader's data, its refusal, and a way to load again; `every` ms re-loads while `keepGoing` says so. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[], poll?: { every: number; keepGoing: (t: T) => boolean }) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = () =>
      load().then(
        (d) => {
          if (!live) return;
          setData(d);
          setError(null);
          if (poll && poll.keepGoing(d)) timer = setTimeout(run, poll.every);
        },
        (e: unknown) => live && setError(e),
      );
    void run();
    return () => {
      live = false;
      if (timer) clearTimeout(timer);
    };
    // The caller names what the load depends on.
  }, [...deps, tick]);
  return { data, error, reload: () => setTick((t) => t + 1) };
}

/**
 * Renders again when `iso` passes (the end of an embargo, R5's interval), so that a control the time held back
 * becomes usable without a reload. Nothing is scheduled past a day: a page is not left open that long.
 */
export function useRenderAt(iso: string | null | undefined): void {
  const [, setTick] = useState(0);
  useEffect(() => {
    const ms = iso ? new Date(iso).getTime() - Date.now() : 0;
    if (!(ms > 0 && ms <= 86_400_000)) return undefined;
    const timer = setTimeout(() => setTick((t) => t + 1), ms + 100);
    return () => clearTimeout(timer);
  }, [iso]);
}

