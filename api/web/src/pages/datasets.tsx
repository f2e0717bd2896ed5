// Datasets: an enterprise's (an admin sees all) with state and progress;
// create one, bulk-upload its files (SHA-256 → CreateUploads → PUT, 4 at a
// time → AddItems), submit it; an admin reviews it; its progress live
// (WatchDataset); and the verified labels exported as a file.
import { useEffect, useRef, useState } from "preact/hooks";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { datasets } from "../api";
import { AddStatus, ExportFormat, State, UploadStatus, type AddResult, type Dataset } from "../gen/tideline/labeling/v1/labeling_pb";
import { Kind } from "../gen/tideline/labeling/v1/events_pb";
import { t, type Key } from "../i18n";
import { session } from "../session";
import { useValue } from "../state";
import { Card, Empty, ErrorBox, Loading, Stat, num, useCall, usePoll, useStream, when } from "../ui";
import { UploadError, pool, putFile, sha256Hex } from "../upload";

// What each kind takes (domain/labeling: ContentTypes and MaxBytes),
// checked here so that one wrong file does not fail a whole CreateUploads.
const kinds: Record<number, { types: string[]; max: number; label: Key }> = {
  [Kind.OCR_IMAGES]: { types: ["image/png", "image/jpeg"], max: 20 << 20, label: "kindOcr" },
  [Kind.AUDIO]: { types: ["audio/wav", "audio/ogg"], max: 100 << 20, label: "kindAudio" },
};
const perCall = 1000; // files per CreateUploads and AddItems

const stateLabels: Record<State, Key> = {
  [State.UNSPECIFIED]: "allStates",
  [State.DRAFT]: "stateDraft",
  [State.SUBMITTED]: "stateSubmitted",
  [State.REJECTED]: "stateRejected",
  [State.PREPROCESSING]: "statePreprocessing",
  [State.LABELING]: "stateLabeling",
};

function StateBadge({ s }: { s: State }) {
  const cls = s === State.REJECTED ? "badge bad" : s === State.LABELING ? "badge ok" : "badge";
  return <span class={cls}>{t(stateLabels[s])}</span>;
}

// done says how far a dataset is: items preprocessed while preprocessing,
// tasks verified while labeling.
function done(d: Dataset): { value: number; max: number; text: string } {
  const p = d.progress;
  if (!p) return { value: 0, max: 1, text: "–" };
  if (d.state === State.PREPROCESSING) {
    return { value: p.itemsPreprocessed + p.itemsFailed, max: Math.max(p.items, 1), text: `${num(p.itemsPreprocessed + p.itemsFailed)} / ${num(p.items)} ${t("preprocessed")}` };
  }
  if (d.state === State.LABELING) {
    return { value: p.verified, max: Math.max(p.tasks, 1), text: `${num(p.verified)} / ${num(p.tasks)} ${t("tasksVerified")}` };
  }
  return { value: 0, max: 1, text: `${num(p.items)} ${t("items")}` };
}

export function DatasetsPage() {
  const s = useValue(session);
  const admin = s?.role === "admin";
  const [sel, setSel] = useState("");
  const [filter, setFilter] = useState(State.UNSPECIFIED);
  const [minPos, setMinPos] = useState(0n);
  const list = useCall((signal) => datasets.listDatasets({ state: filter, limit: 100, minPosition: minPos }, { signal }), [filter, minPos]);
  usePoll(list.reload, 5000);
  const changed = (pos: bigint) => setMinPos((p) => (pos > p ? pos : p));

  return (
    <div class="grid">
      {sel && <DatasetView key={sel} id={sel} admin={admin} onChanged={changed} onChange={list.reload} />}
      <Card title={t("datasets")} id="datasets" wide>
        {admin && (
          <label class="inline">
            {t("state")}
            <select value={filter} onChange={(e) => setFilter(Number(e.currentTarget.value) as State)}>
              {[State.UNSPECIFIED, State.SUBMITTED, State.DRAFT, State.REJECTED, State.PREPROCESSING, State.LABELING].map((x) => (
                <option key={x} value={x}>{t(stateLabels[x])}</option>
              ))}
            </select>
          </label>
        )}
        {list.error !== undefined && <ErrorBox error={list.error} retry={list.reload} />}
        {!list.data ? (
          list.error === undefined && <Loading />
        ) : list.data.datasets.length === 0 ? (
          <Empty text={t("noDatasets")} />
        ) : (
          <div class="scroll">
            <table data-datasets={String(list.data.datasets.length)}>
              <thead>
                <tr>
                  <th scope="col">{t("name")}</th><th scope="col">{t("kind")}</th><th scope="col">{t("state")}</th><th scope="col">{t("progress")}</th>
                  {admin && <th scope="col">{t("owner")}</th>}<th scope="col">{t("updated")}</th>
                </tr>
              </thead>
              <tbody>
                {list.data.datasets.map((d) => {
                  const p = done(d);
                  return (
                    <tr key={d.datasetId} class={d.datasetId === sel ? "sel" : ""} data-dataset={d.datasetId} data-dataset-state={State[d.state]}>
                      <td><button type="button" class="link" aria-pressed={d.datasetId === sel} onClick={() => setSel(d.datasetId)}>{d.name}</button></td>
                      <td>{t(kinds[d.kind]?.label ?? "kind")}</td>
                      <td><StateBadge s={d.state} /></td>
                      <td>
                        <progress class="progress small" max={p.max} value={p.value} aria-label={p.text} /> <small>{p.text}</small>
                      </td>
                      {admin && <td>{d.ownerId}</td>}
                      <td>{when(d.updatedAt ?? d.createdAt)}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </Card>
      <NewDataset onCreated={(id, pos) => { setSel(id); changed(pos); }} />
    </div>
  );
}

function NewDataset({ onCreated }: { onCreated: (id: string, pos: bigint) => void }) {
  const [name, setName] = useState("");
  const [kind, setKind] = useState(Kind.OCR_IMAGES);
  const [instructions, setInstructions] = useState("");
  const [perItem, setPerItem] = useState(3);
  const [deadline, setDeadline] = useState("");
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<unknown>();

  async function create(e: Event) {
    e.preventDefault();
    setBusy(true);
    setErr(undefined);
    try {
      const res = await datasets.createDataset({
        name: name.trim(), kind, instructions: instructions.trim(), labelsPerItem: perItem,
        deadline: deadline ? timestampFromDate(new Date(deadline)) : undefined,
      });
      setName("");
      setInstructions("");
      setDeadline("");
      onCreated(res.dataset!.datasetId, res.position);
    } catch (e) {
      setErr(e);
    } finally {
      setBusy(false);
    }
  }

  return (
    <Card title={t("newDataset")} id="new-dataset">
      <form onSubmit={create} data-dataset-form>
        <label>
          {t("name")}
          <input required maxLength={200} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          {t("kind")}
          <select value={kind} onChange={(e) => setKind(Number(e.currentTarget.value) as Kind)}>
            <option value={Kind.OCR_IMAGES}>{t("kindOcr")}</option>
            <option value={Kind.AUDIO}>{t("kindAudio")}</option>
          </select>
        </label>
        <label>
          {t("instructions")}
          <textarea rows={3} maxLength={2000} value={instructions} onInput={(e) => setInstructions(e.currentTarget.value)} />
        </label>
        <div class="row">
          <label>
            {t("labelsPerItem")}
            <input type="number" min={1} max={10} value={perItem} onInput={(e) => setPerItem(Number(e.currentTarget.value) || 3)} />
          </label>
          <label>
            <span>{t("deadline")} <small>({t("optional")})</small></span>
            <input type="datetime-local" value={deadline} onInput={(e) => setDeadline(e.currentTarget.value)} />
          </label>
        </div>
        <button type="submit" class="primary" disabled={busy || !name.trim()}>{t("create")}</button>
      </form>
      {err !== undefined && <ErrorBox error={err} />}
    </Card>
  );
}

// DatasetView shows a dataset live and what may be done with it now:
// onChanged is told the position of the caller's own changes, onChange
// that the dataset changed (the list then reads it again).
function DatasetView({ id, admin, onChanged, onChange }: { id: string; admin: boolean; onChanged: (pos: bigint) => void; onChange: () => void }) {
  const w = useStream((signal) => datasets.watchDataset({ datasetId: id }, { signal }), [id]);
  const d = w.data?.dataset;
  useEffect(() => {
    document.getElementById("dataset")?.scrollIntoView({ block: "nearest" });
  }, []);
  useEffect(() => {
    if (d) onChange();
  }, [d?.version]);
  if (!d) return <Card title={t("dataset")} id="dataset">{w.error !== undefined ? <ErrorBox error={w.error} /> : <Loading />}</Card>;
  const p = d.progress;
  const open = d.state === State.DRAFT || d.state === State.REJECTED;
  const mine = d.ownerId === session.get()?.userId;
  const pr = done(d);
  return (
    <Card title={`${t("dataset")}: ${d.name}`} id="dataset" wide>
      <div data-dataset-view={d.datasetId} data-dataset-state={State[d.state]}>
        <p class="live" role="status" aria-live="polite">
          <span class={w.live ? "dot on" : "dot"} aria-hidden="true" /> {w.live ? t("live") : t("reconnecting")} · <StateBadge s={d.state} /> · {t(kinds[d.kind]?.label ?? "kind")} · {t("owner")} {d.ownerId} · {t("labelsPerItem")} {d.labelsPerItem}
          {d.deadline && <> · {t("deadline")} {when(d.deadline)}</>}
        </p>
        {w.error !== undefined && !w.live && <ErrorBox error={w.error} />}
        {d.instructions && <p class="text">{d.instructions}</p>}
        {d.state === State.REJECTED && (
          <p class="state error" data-reject-reason>
            <strong>{t("stateRejected")}</strong> {d.rejectReason}
          </p>
        )}
        {(d.state === State.PREPROCESSING || d.state === State.LABELING) && (
          <p>
            {pr.text}
            <progress class="progress" max={pr.max} value={pr.value} aria-label={pr.text} data-dataset-progress />
          </p>
        )}
        <div class="stats">
          <Stat id="items" label={t("items")} value={num(p?.items ?? 0)} />
          <Stat id="preprocessed" label={t("itemsPreprocessed")} value={num(p?.itemsPreprocessed ?? 0)} />
          <Stat id="failed" label={t("itemsFailed")} value={num(p?.itemsFailed ?? 0)} />
          <Stat id="tasks" label={t("tasks")} value={num(p?.tasks ?? 0)} />
          <Stat id="labels" label={t("labelsGiven")} value={num(p?.labels ?? 0)} />
          <Stat id="verified" label={t("verified")} value={num(p?.verified ?? 0)} />
          <Stat id="accepted" label={t("labelsAccepted")} value={num(p?.accepted ?? 0)} />
          <Stat id="unresolved" label={t("unresolved")} value={num(p?.unresolved ?? 0)} />
        </div>
        {d.failed.length > 0 && (
          <details>
            <summary>{t("failedItems")} ({d.failed.length})</summary>
            <div class="scroll">
              <table>
                <tbody>
                  {d.failed.map((f) => (
                    <tr key={f.itemId}><td><code>{f.sha256.slice(0, 12)}</code></td><td>{f.reason}</td></tr>
                  ))}
                </tbody>
              </table>
            </div>
          </details>
        )}
        <div class="split even">
          {open && mine && <UploadItems d={d} onChanged={onChanged} />}
          {open && mine && (p?.items ?? 0) > 0 && <Submit d={d} onChanged={onChanged} />}
          {admin && d.state === State.SUBMITTED && <Review d={d} onChanged={onChanged} />}
          <Export d={d} />
        </div>
      </div>
    </Card>
  );
}

type UpPhase =
  | { at: "idle" }
  | { at: "hashing"; n: number; of: number }
  | { at: "uploading"; sent: number; total: number }
  | { at: "adding" }
  | { at: "done"; added: number; duplicates: number; problems: AddResult[] };

function UploadItems({ d, onChanged }: { d: Dataset; onChanged: (pos: bigint) => void }) {
  const k = kinds[d.kind] ?? kinds[Kind.OCR_IMAGES];
  const [files, setFiles] = useState<File[]>([]);
  const [phase, setPhase] = useState<UpPhase>({ at: "idle" });
  const [err, setErr] = useState<unknown>();
  const [inputKey, setInputKey] = useState(0);
  const busy = phase.at === "hashing" || phase.at === "uploading" || phase.at === "adding";
  const bad = files.filter((f) => !k.types.includes(f.type) || f.size === 0 || f.size > k.max);
  const good = files.filter((f) => !bad.includes(f));

  async function upload(e: Event) {
    e.preventDefault();
    if (good.length === 0) return;
    setErr(undefined);
    try {
      let hashed = 0;
      setPhase({ at: "hashing", n: 0, of: good.length });
      const shas = await pool(good, 4, async (f) => {
        const h = await sha256Hex(f);
        setPhase({ at: "hashing", n: ++hashed, of: good.length });
        return h;
      });
      const total = good.reduce((n, f) => n + f.size, 0);
      const sent = good.map(() => 0);
      const report = () => setPhase({ at: "uploading", sent: sent.reduce((a, b) => a + b, 0), total });
      report();
      for (let lo = 0; lo < good.length; lo += perCall) {
        const chunk = good.slice(lo, lo + perCall);
        const { uploads } = await datasets.createUploads({
          datasetId: d.datasetId,
          files: chunk.map((f, i) => ({ sha256: shas[lo + i], size: BigInt(f.size), contentType: f.type })),
        });
        await pool(chunk, 4, async (f, i) => {
          const u = uploads[i];
          if (u.status === UploadStatus.UPLOAD) {
            try {
              await putFile(u.url, f, f.type, (n) => { sent[lo + i] = n; report(); });
            } catch (e) {
              // 409: stored by an earlier, interrupted upload; AddItems checks it.
              if (!(e instanceof UploadError && e.status === 409)) throw e;
            }
          }
          sent[lo + i] = f.size;
          report();
        });
      }
      setPhase({ at: "adding" });
      const unique = [...new Set(shas)];
      let added = 0, duplicates = 0, pos = 0n;
      const problems: AddResult[] = [];
      for (let lo = 0; lo < unique.length; lo += perCall) {
        const res = await datasets.addItems({ datasetId: d.datasetId, sha256s: unique.slice(lo, lo + perCall) });
        added += res.added;
        duplicates += res.duplicates;
        problems.push(...res.results.filter((r) => r.status === AddStatus.MISSING || r.status === AddStatus.INVALID));
        if (res.position > pos) pos = res.position;
      }
      setPhase({ at: "done", added, duplicates: duplicates + shas.length - unique.length, problems });
      setFiles([]);
      setInputKey((x) => x + 1);
      onChanged(pos);
    } catch (e) {
      setErr(e);
      setPhase({ at: "idle" });
    }
  }

  return (
    <form onSubmit={upload} data-upload-items>
      <h3>{t("addFiles")}</h3>
      <label>
        <span>{t("chooseFiles")} <small>({k.types.join(", ")}; ≤ {k.max >> 20} MiB)</small></span>
        <input key={inputKey} type="file" multiple accept={k.types.join(",")} disabled={busy}
          onChange={(e) => { setFiles(Array.from(e.currentTarget.files ?? [])); setPhase({ at: "idle" }); }} />
      </label>
      {bad.length > 0 && (
        <p class="state error" role="alert">
          {t("skippedFiles")} ({bad.length}): {bad.slice(0, 10).map((f) => f.name).join(", ")}{bad.length > 10 ? "…" : ""}
        </p>
      )}
      <button type="submit" class="primary" disabled={busy || good.length === 0}>
        {t("upload")} {good.length > 0 ? `(${good.length})` : ""}
      </button>
      <div aria-live="polite" data-upload-phase={phase.at}>
        {phase.at === "hashing" && <p>{t("hashing")} {phase.n} / {phase.of}<progress class="progress" max={phase.of} value={phase.n} /></p>}
        {phase.at === "uploading" && (
          <p>
            {t("uploading")} {Math.round((100 * phase.sent) / Math.max(phase.total, 1))}%
            <progress class="progress" max={phase.total} value={phase.sent} data-upload-progress />
          </p>
        )}
        {phase.at === "adding" && <p>{t("addingItems")}</p>}
        {phase.at === "done" && (
          <div class="state ok" data-upload-result={phase.added}>
            {t("added")} {phase.added} · {t("duplicates")} {phase.duplicates}
            {phase.problems.length > 0 && (
              <ul>
                {phase.problems.map((r) => (
                  <li key={r.sha256}><code>{r.sha256.slice(0, 12)}</code> {AddStatus[r.status]}: {r.reason}</li>
                ))}
              </ul>
            )}
          </div>
        )}
      </div>
      {err !== undefined && <ErrorBox error={err} />}
    </form>
  );
}

function Submit({ d, onChanged }: { d: Dataset; onChanged: (pos: bigint) => void }) {
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<unknown>();
  async function submit() {
    setBusy(true);
    setErr(undefined);
    try {
      onChanged((await datasets.submitDataset({ datasetId: d.datasetId })).position);
    } catch (e) {
      setErr(e);
    } finally {
      setBusy(false);
    }
  }
  return (
    <div>
      <h3>{t("submit")}</h3>
      <p class="muted">{t("submitHint")}</p>
      <button type="button" class="primary" disabled={busy} onClick={submit} data-submit-dataset>{t("submit")}</button>
      {err !== undefined && <ErrorBox error={err} />}
    </div>
  );
}

function Review({ d, onChanged }: { d: Dataset; onChanged: (pos: bigint) => void }) {
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<unknown>();
  async function review(approve: boolean) {
    setBusy(true);
    setErr(undefined);
    try {
      onChanged((await datasets.reviewDataset({ datasetId: d.datasetId, approve, reason: approve ? "" : reason.trim() })).position);
    } catch (e) {
      setErr(e);
    } finally {
      setBusy(false);
    }
  }
  return (
    <div data-review>
      <h3>{t("review")}</h3>
      <button type="button" class="primary" disabled={busy} onClick={() => review(true)} data-approve>{t("approve")}</button>
      <label>
        {t("rejectReason")}
        <textarea rows={2} maxLength={500} value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
      </label>
      <button type="button" disabled={busy || !reason.trim()} onClick={() => review(false)} data-reject>{t("reject")}</button>
      {err !== undefined && <ErrorBox error={err} />}
    </div>
  );
}

function slug(s: string): string {
  return s.normalize("NFKC").replace(/[^\p{L}\p{N}]+/gu, "-").replace(/^-|-$/g, "").slice(0, 60);
}

function Export({ d }: { d: Dataset }) {
  const [format, setFormat] = useState(ExportFormat.JSONL);
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<unknown>();
  const [file, setFile] = useState<{ url: string; name: string; bytes: number; lines: number; jsonl: boolean }>();
  const link = useRef<HTMLAnchorElement>(null);
  useEffect(() => () => { if (file) URL.revokeObjectURL(file.url); }, [file]);
  useEffect(() => { if (file) link.current?.click(); }, [file]);
  const coco = d.kind === Kind.OCR_IMAGES;

  async function run() {
    setBusy(true);
    setErr(undefined);
    try {
      const parts: Uint8Array<ArrayBuffer>[] = [];
      let bytes = 0;
      for await (const m of datasets.exportLabels({ datasetId: d.datasetId, format })) {
        parts.push(new Uint8Array(m.data));
        bytes += m.data.length;
      }
      const jsonl = format === ExportFormat.JSONL;
      const lines = jsonl ? parts.reduce((n, p) => n + p.filter((b) => b === 10).length, 0) : 0;
      const blob = new Blob(parts, { type: jsonl ? "application/x-ndjson" : "application/json" });
      const name = `${slug(d.name) || d.datasetId}-verified${jsonl ? ".jsonl" : ".coco-text.json"}`;
      setFile({ url: URL.createObjectURL(blob), name, bytes, lines, jsonl });
    } catch (e) {
      setErr(e);
    } finally {
      setBusy(false);
    }
  }

  return (
    <div data-export>
      <h3>{t("export")}</h3>
      {coco && (
        <label class="inline">
          {t("format")}
          <select value={format} onChange={(e) => setFormat(Number(e.currentTarget.value) as ExportFormat)}>
            <option value={ExportFormat.JSONL}>JSON Lines</option>
            <option value={ExportFormat.COCO_TEXT}>COCO-Text</option>
          </select>
        </label>
      )}{" "}
      <button type="button" disabled={busy} onClick={run}>{busy ? t("loading") : t("download")}</button>
      {file && (
        <p class="muted" data-export-file={file.name} data-export-lines={file.lines}>
          <a ref={link} href={file.url} download={file.name}>{file.name}</a> · {num(file.bytes)} B
          {file.jsonl && ` · ${num(file.lines)} ${t("verifiedTasks")}`}
        </p>
      )}
      {err !== undefined && <ErrorBox error={err} />}
    </div>
  );
}
