// The admin dashboard, live: WatchDashboard sends it now and after every
// change. Board, today's and this month's figures, orders per zone per
// hour with the next hour's expectation, riders by rating, a rider's
// danger trend and the danger map.
import { useEffect, useMemo, useState } from "preact/hooks";
import type { AlignedData } from "uplot";
import { dashboard } from "../api";
import type { Dashboard as DashboardPB, PeriodStats } from "../gen/tideline/dashboard/v1/dashboard_pb";
import { DeliveryState } from "../gen/tideline/dashboard/v1/dashboard_pb";
import { t } from "../i18n";
import { Card, Empty, ErrorBox, Loading, Stat, duration, num, useStream, when, won } from "../ui";
import { Chart, HeatMapView, bars } from "../chart";

export function Dashboard() {
  const [rider, setRider] = useState("");
  const s = useStream((signal) => dashboard.watchDashboard({ query: { riderId: rider, rankingLimit: 20, activeLimit: 50, trendLimit: 10 } }, { signal }), [rider]);
  const d = s.data?.dashboard;
  useEffect(() => {
    // The first paint with figures, for the load-time measurement (browser test).
    if (d && performance.getEntriesByName("tideline:dashboard").length === 0) performance.mark("tideline:dashboard");
  }, [d]);
  if (!d) return s.error ? <ErrorBox error={s.error} /> : <Loading />;
  const empty = d.thisMonth?.orders === 0 && d.zones.length === 0 && (d.heatMap?.total ?? 0) === 0;
  return (
    <div class="grid" data-position={String(d.position)}>
      <p class="live" role="status" aria-live="polite">
        <span class={s.live ? "dot on" : "dot"} aria-hidden="true" /> {s.live ? t("live") : t("reconnecting")} · {d.date} · #{String(d.position)}
      </p>
      {s.error !== undefined && !s.live && <ErrorBox error={s.error} />}
      {empty && <Empty text={t("emptyDashboard")} />}
      <Card title={t("board")} id="board">
        <div class="stats">
          <Stat id="placed" label={t("placed")} value={num(d.board?.placed ?? 0)} />
          <Stat id="accepted" label={t("accepted")} value={num(d.board?.accepted ?? 0)} />
          <Stat id="picked_up" label={t("pickedUp")} value={num(d.board?.pickedUp ?? 0)} />
          <Stat id="delivered_today" label={t("deliveredToday")} value={num(d.board?.deliveredToday ?? 0)} />
          <Stat id="cancelled_today" label={t("cancelledToday")} value={num(d.board?.cancelledToday ?? 0)} />
        </div>
      </Card>
      <Period title={t("today")} id="today" p={d.today} />
      <Period title={t("thisMonth")} id="month" p={d.thisMonth} />
      <Zones d={d} />
      <Card title={t("riderRanking")} id="ranking">
        {d.riderRanking.length === 0 ? (
          <Empty text={t("emptyDashboard")} />
        ) : (
          <div class="scroll">
            <table>
              <thead>
                <tr><th scope="col">{t("rank")}</th><th scope="col">{t("rider")}</th><th scope="col">{t("stars")}</th><th scope="col">{t("ratings")}</th></tr>
              </thead>
              <tbody>
                {d.riderRanking.map((r) => (
                  <tr key={r.riderId}>
                    <td>{r.rank}</td>
                    <td><button type="button" class="link" onClick={() => setRider(r.riderId)}>{r.riderId}</button></td>
                    <td>{r.averageStars.toFixed(2)}</td>
                    <td>{num(r.ratings)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Card>
      <Trend d={d} rider={rider} setRider={setRider} />
      <Card title={t("heatMap")} id="heat" wide>
        <p class="muted">
          {num(d.heatMap?.total ?? 0)} {t("dangerEvents")} · {num(d.heatMap?.cells.length ?? 0)} {t("cells")} · {num(d.heatMap?.withoutLocation ?? 0)} {t("withoutLocation")}
        </p>
        <HeatMapView heat={d.heatMap} />
      </Card>
      <Card title={t("activeDeliveries")} id="active" wide>
        {(d.board?.active.length ?? 0) === 0 ? (
          <p class="muted">–</p>
        ) : (
          <div class="scroll">
            <table>
              <thead>
                <tr><th scope="col">{t("order")}</th><th scope="col">{t("rider")}</th><th scope="col">{t("zone")}</th><th scope="col">{t("state")}</th><th scope="col">{t("amount")}</th><th scope="col">{t("since")}</th></tr>
              </thead>
              <tbody>
                {d.board!.active.map((a) => (
                  <tr key={a.orderId}>
                    <td>{a.orderId}</td>
                    <td>{a.riderId}</td>
                    <td>{a.zone}</td>
                    <td>{a.state === DeliveryState.PICKED_UP ? t("pickedUp") : t("accepted")}</td>
                    <td>{won(a.amount)}</td>
                    <td>{when(a.acceptedAt)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Card>
    </div>
  );
}

function Period({ title, id, p }: { title: string; id: string; p: PeriodStats | undefined }) {
  return (
    <Card title={title} id={id}>
      <div class="stats">
        <Stat id={id + "_orders"} label={t("orders")} value={num(p?.orders ?? 0)} />
        <Stat id={id + "_delivered"} label={t("delivered")} value={num(p?.delivered ?? 0)} />
        <Stat id={id + "_cancelled"} label={t("cancelled")} value={num(p?.cancelled ?? 0)} />
        <Stat id={id + "_avg_amount"} label={t("avgAmount")} value={won(Math.round(p?.avgOrderAmount ?? 0))} />
        <Stat id={id + "_avg_delivery"} label={t("avgDelivery")} value={duration(p?.avgDeliverySeconds ?? 0)} />
      </div>
    </Card>
  );
}

const hours = Array.from({ length: 24 }, (_, i) => i);

function Zones({ d }: { d: DashboardPB }) {
  const [zone, setZone] = useState("");
  // Busiest first: today's orders, then this month's.
  const zones = useMemo(() => [...d.zones].sort((a, b) => (b.today?.orders ?? 0) - (a.today?.orders ?? 0) || (b.thisMonth?.orders ?? 0) - (a.thisMonth?.orders ?? 0) || a.zone.localeCompare(b.zone)), [d.zones]);
  const z = zones.find((x) => x.zone === zone) ?? zones[0];
  const data = useMemo<AlignedData>(() => {
    const next = z?.nextHourStart ? (Number(z.nextHourStart.seconds) / 3600 + 9) % 24 : -1;
    return [hours, z ? z.hourlyOrders.map((n) => n) : hours.map(() => 0), hours.map((h) => (h === next ? (z?.expectedNextHour ?? null) : null))];
  }, [z]);
  return (
    <Card title={t("zones")} id="zones" wide>
      {d.zones.length === 0 ? (
        <Empty text={t("emptyDashboard")} />
      ) : (
        <div class="split">
          <div class="scroll tall">
            <table>
              <thead>
                <tr><th scope="col">{t("zone")}</th><th scope="col">{t("today")}</th><th scope="col">{t("thisMonth")}</th><th scope="col">{t("expectedNextHour")}</th></tr>
              </thead>
              <tbody>
                {zones.map((x) => (
                  <tr key={x.zone} class={x === z ? "sel" : ""}>
                    <td><button type="button" class="link" aria-pressed={x === z} onClick={() => setZone(x.zone)}>{x.zone}</button></td>
                    <td>{num(x.today?.orders ?? 0)}</td>
                    <td>{num(x.thisMonth?.orders ?? 0)}</td>
                    <td>{x.expectedNextHour.toFixed(1)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <div>
            <h3>{t("hourly")} · {z?.zone}</h3>
            <Chart label={t("hourly")} data={data} opts={{
              scales: { x: { time: false } },
              axes: [{ values: (_u, v) => v.map((h) => h + "h") }, {}],
              series: [{ label: "h" }, { label: t("orders"), fill: "rgba(43,108,176,0.5)", stroke: "#2b6cb0", paths: bars }, { label: t("expectedNextHour"), stroke: "#c05621", fill: "rgba(192,86,33,0.35)", paths: bars }],
            }} />
          </div>
        </div>
      )}
    </Card>
  );
}

const palette = ["#c53030", "#2b6cb0", "#2f855a", "#b7791f", "#6b46c1", "#c05621", "#2c7a7b", "#97266d", "#4a5568", "#975a16"];

function Trend({ d, rider, setRider }: { d: DashboardPB; rider: string; setRider: (r: string) => void }) {
  const trends = d.dangerTrends;
  const days = trends[0]?.daily.length ?? 0;
  const data = useMemo<AlignedData>(() => [Array.from({ length: days }, (_, i) => i + 1), ...trends.map((tr) => tr.daily.map((n) => n))], [trends, days]);
  return (
    <Card title={t("dangerTrend")} id="trend">
      <label class="inline">
        {t("rider")}{" "}
        <input list="riders" value={rider} placeholder="–" onChange={(e) => setRider(e.currentTarget.value.trim())} />
        <datalist id="riders">{d.riderRanking.map((r) => <option key={r.riderId} value={r.riderId} />)}</datalist>
      </label>
      {trends.length === 0 || days === 0 ? (
        <p class="muted">–</p>
      ) : (
        <Chart label={t("dangerTrend")} data={data} opts={{
          scales: { x: { time: false } },
          series: [{ label: d.month }, ...trends.map((tr, i) => ({ label: `${tr.riderId} (${tr.total})`, stroke: palette[i % palette.length], width: 2 }))],
        }} />
      )}
    </Card>
  );
}
