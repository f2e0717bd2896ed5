// Storytime: upload photos of book pages, watch each story go through its
// stages live (OCR → speech → done, or failed with the reason), and listen
// to it. One photo is RequestStory; several are one RequestStories batch.
// Below, the caller's stories; choosing one watches it.
import { useEffect, useState } from "preact/hooks";
import { Code, code, stories } from "../api";
import type { Story } from "../gen/tideline/story/v1/story_pb";
import { Stage } from "../gen/tideline/story/v1/events_pb";
import { t, type Key } from "../i18n";
import { Card, ErrorBox, Loaded, Loading, useCall, usePoll, when } from "../ui";
import { pool, putFile } from "../upload";

// What the server takes (domain/story: PNG or JPEG, at most 10 MiB, 100 a
// batch); checked here so one wrong file does not fail a whole batch.
const imageTypes = ["image/png", "image/jpeg"];
const maxImageBytes = 10 << 20;
const maxBatch = 100;

export function StoryPage() {
  const [sel, setSel] = useState("");
  const [minPos, setMinPos] = useState(0n);
  const list = useCall((signal) => stories.listStories({ limit: 50, minPosition: minPos }, { signal }), [minPos]);
  usePoll(list.reload, 5000);

  return (
    <div class="grid">
      <NewStory
        onStarted={(id, pos) => {
          setSel(id);
          setMinPos(pos);
        }}
      />
      {sel && <StoryView key={sel} id={sel} onChange={list.reload} />}
      <Card title={t("yourStories")} id="stories" wide>
        <Loaded call={list} isEmpty={(d) => d.stories.length === 0} empty={t("noStories")}>{(d) => (
          <div class="scroll">
            <table data-stories={String(d.total)}>
              <thead>
                <tr><th scope="col">{t("requested")}</th><th scope="col">{t("stage")}</th><th scope="col">{t("updated")}</th><th scope="col"><span class="sr">{t("open")}</span></th></tr>
              </thead>
              <tbody>
                {d.stories.map((s) => (
                  <tr key={s.storyId} class={s.storyId === sel ? "sel" : ""} data-story={s.storyId} data-story-state={Stage[s.stage]}>
                    <td>{when(s.requestedAt)}</td>
                    <td><StageBadge stage={s.stage} /></td>
                    <td>{when(s.updatedAt)}</td>
                    <td>
                      <button type="button" aria-pressed={s.storyId === sel} onClick={() => setSel(s.storyId)}>
                        {t("open")}
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}</Loaded>
      </Card>
    </div>
  );
}

type Phase = { at: "idle" } | { at: "uploading"; sent: number; total: number } | { at: "requesting" } | { at: "done"; duplicate: boolean; batch: number };

function NewStory({ onStarted }: { onStarted: (id: string, pos: bigint) => void }) {
  const [files, setFiles] = useState<File[]>([]);
  const [langs, setLangs] = useState({ en: true, ko: true });
  const [phase, setPhase] = useState<Phase>({ at: "idle" });
  const [err, setErr] = useState<unknown>();
  const [inputKey, setInputKey] = useState(0);
  const busy = phase.at === "uploading" || phase.at === "requesting";

  const bad = files.filter((f) => !imageTypes.includes(f.type) || f.size > maxImageBytes || f.size === 0);

  async function start(e: Event) {
    e.preventDefault();
    setErr(undefined);
    if (files.length === 0 || bad.length > 0 || files.length > maxBatch) return;
    const total = files.reduce((n, f) => n + f.size, 0);
    const sent = files.map(() => 0);
    setPhase({ at: "uploading", sent: 0, total });
    try {
      const { uploads } = await stories.createUploads({ count: files.length });
      await pool(files, 4, (f, i) =>
        putFile(uploads[i].url, f, f.type, (n) => {
          sent[i] = n;
          setPhase({ at: "uploading", sent: sent.reduce((a, b) => a + b, 0), total });
        }),
      );
      setPhase({ at: "requesting" });
      const l = (["en", "ko"] as const).filter((x) => langs[x]);
      if (files.length === 1) {
        const res = await stories.requestStory({ uploadName: uploads[0].name, langs: l });
        setPhase({ at: "done", duplicate: res.duplicate, batch: 0 });
        onStarted(res.storyId, res.position);
      } else {
        const res = await stories.requestStories({ uploadNames: uploads.map((u) => u.name), langs: l });
        setPhase({ at: "done", duplicate: false, batch: res.storyIds.length });
        onStarted(res.storyIds[0], res.position);
      }
      setFiles([]);
      setInputKey((k) => k + 1); // a fresh, empty file input
    } catch (e) {
      setErr(e);
      setPhase({ at: "idle" });
    }
  }

  return (
    <Card title={t("newStory")} id="new-story">
      <form onSubmit={start} data-story-form>
        <label>
          {t("pagePhotos")}
          <input key={inputKey} type="file" accept={imageTypes.join(",")} multiple disabled={busy}
            onChange={(e) => setFiles(Array.from(e.currentTarget.files ?? []))} />
        </label>
        <fieldset class="plain">
          <legend>{t("pageLangs")}</legend>
          <label class="inline">
            <input type="checkbox" checked={langs.en} disabled={busy} onChange={(e) => setLangs({ ...langs, en: e.currentTarget.checked })} /> {t("langEn")}
          </label>{" "}
          <label class="inline">
            <input type="checkbox" checked={langs.ko} disabled={busy} onChange={(e) => setLangs({ ...langs, ko: e.currentTarget.checked })} /> {t("langKo")}
          </label>
        </fieldset>
        {bad.length > 0 && (
          <p class="state error" role="alert">
            {t("notPageImage")}: {bad.map((f) => f.name).join(", ")}
          </p>
        )}
        {files.length > maxBatch && <p class="state error" role="alert">{t("tooManyFiles")} ({maxBatch})</p>}
        <button type="submit" class="primary" disabled={busy || files.length === 0 || bad.length > 0 || files.length > maxBatch}>
          {t("readAloud")}
          {files.length > 1 ? ` (${files.length})` : ""}
        </button>
      </form>
      <div aria-live="polite" data-upload-phase={phase.at}>
        {phase.at === "uploading" && (
          <p>
            {t("uploading")}
            <progress class="progress" max={phase.total} value={phase.sent} />
          </p>
        )}
        {phase.at === "requesting" && <p>{t("starting")}</p>}
        {phase.at === "done" && phase.duplicate && <p class="muted">{t("duplicateStory")}</p>}
        {phase.at === "done" && phase.batch > 0 && <p class="muted">{phase.batch} {t("batchStarted")}</p>}
      </div>
      {err !== undefined && <ErrorBox error={err} />}
    </Card>
  );
}

// Errors after which watching again cannot help.
const final = new Set([Code.InvalidArgument, Code.PermissionDenied, Code.Unauthenticated, Code.NotFound, Code.Unimplemented]);

function ended(s: Story | undefined): boolean {
  return s?.stage === Stage.NOTIFIED || s?.stage === Stage.FAILED;
}

// useStory follows WatchStory. The server ends the stream once the user
// was told; a stream that broke before that is reopened (1 s doubling to
// 15 s).
function useStory(id: string) {
  const [state, setState] = useState<{ story?: Story; error?: unknown; live: boolean }>({ live: false });
  useEffect(() => {
    const ac = new AbortController();
    let last: Story | undefined;
    let backoff = 1000;
    (async () => {
      while (!ac.signal.aborted) {
        try {
          for await (const m of stories.watchStory({ storyId: id }, { signal: ac.signal })) {
            last = m.story;
            backoff = 1000;
            setState({ story: last, live: true });
          }
          if (ended(last)) {
            setState({ story: last, live: false });
            return;
          }
        } catch (e) {
          if (ac.signal.aborted) return;
          setState({ story: last, error: e, live: false });
          const c = code(e);
          if (c !== undefined && final.has(c)) return;
        }
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 15000);
      }
    })();
    return () => ac.abort();
  }, [id]);
  return state;
}

const steps: { stage: Stage; label: Key }[] = [
  { stage: Stage.REQUESTED, label: "stageRequested" },
  { stage: Stage.TEXT_EXTRACTED, label: "stageOcr" },
  { stage: Stage.SPEECH_SYNTHESIZED, label: "stageTts" },
  { stage: Stage.NOTIFIED, label: "stageDone" },
];

function stageLabel(s: Stage): string {
  if (s === Stage.FAILED) return t("stageFailed");
  return t(steps.find((x) => x.stage === s)?.label ?? "stageRequested");
}

function StageBadge({ stage }: { stage: Stage }) {
  const cls = stage === Stage.FAILED ? "badge bad" : stage >= Stage.SPEECH_SYNTHESIZED ? "badge ok" : "badge";
  return <span class={cls}>{stageLabel(stage)}</span>;
}

// StoryView shows a story live; onChange is called when it changes (the
// list then reads its stage again).
function StoryView({ id, onChange }: { id: string; onChange: () => void }) {
  const w = useStory(id);
  const s = w.story;
  useEffect(() => {
    document.getElementById("story")?.scrollIntoView({ block: "nearest" });
  }, []);
  useEffect(() => {
    if (s) onChange();
  }, [s?.version]);
  return (
    <Card title={t("theStory")} id="story">
      {!s ? (
        w.error !== undefined ? <ErrorBox error={w.error} /> : <Loading />
      ) : (
        <div data-story-view={s.storyId} data-story-state={Stage[s.stage]}>
          <p class="live" role="status" aria-live="polite">
            <span class={w.live ? "dot on" : "dot"} aria-hidden="true" /> {ended(s) ? stageLabel(s.stage) : w.live ? t("live") : t("reconnecting")} · {when(s.requestedAt)}
          </p>
          <ol class="stages" aria-label={t("stage")}>
            {steps.map((x) => {
              const failedHere = s.stage === Stage.FAILED && s.failedStage === x.stage;
              const done = s.stage === Stage.FAILED ? x.stage < s.failedStage : s.stage >= x.stage;
              const st = failedHere ? "failed" : done ? "done" : "todo";
              return (
                <li key={x.stage} class={st} data-step={Stage[x.stage]} data-step-state={st} aria-current={!done && !failedHere && x.stage === s.stage + 1 ? "step" : undefined}>
                  <span aria-hidden="true">{failedHere ? "✕" : done ? "✓" : "·"}</span> {t(x.label)}
                  {failedHere && <span class="sr"> — {t("stageFailed")}</span>}
                </li>
              );
            })}
          </ol>
          {s.stage === Stage.FAILED && (
            <p class="state error" role="alert" data-story-failure>
              <strong>{t("stageFailed")}</strong> {stageLabel(s.failedStage)}: {s.failure}
            </p>
          )}
          {s.audioUrl && (
            <div>
              <h3>{t("listen")}</h3>
              <audio controls preload="metadata" src={s.audioUrl} data-story-audio>
                <a href={s.audioUrl}>{t("listen")}</a>
              </audio>
              <p class="muted">
                {(Number(s.audioDurationMs) / 1000).toFixed(1)} s · {s.audioContentType} · {t("linkUntil")} {when(s.audioUrlExpiresAt)}
              </p>
            </div>
          )}
          {s.stage !== Stage.REQUESTED && s.text && (
            <div>
              <h3>{t("recognisedText")} <small>({t("confidence")} {Math.round(s.textConfidence * 100)}%)</small></h3>
              <blockquote class="text" data-story-text>{s.text}</blockquote>
            </div>
          )}
          {s.notifiedChannel && s.notifiedChannel !== "none" && <p class="muted">{t("notifiedBy")} {s.notifiedChannel}</p>}
        </div>
      )}
      {s && w.error !== undefined && !w.live && !ended(s) && <ErrorBox error={w.error} />}
    </Card>
  );
}
