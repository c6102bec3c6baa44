// The live loss chart under the training progress message (agent/ui/views.py updates its props as steps arrive).
export default function LossChart() {
  const points = props.points || [];
  const width = 560, height = 180, pad = 34;
  if (points.length < 2) {
    return <div className="text-sm text-muted-foreground">Loss chart: waiting for the first steps…</div>;
  }
  const steps = points.map((p) => p[0]);
  const losses = points.map((p) => p[1]);
  const maxStep = Math.max(props.total || 0, ...steps);
  const lo = Math.min(...losses), hi = Math.max(...losses);
  const span = hi - lo || 1;
  const x = (s) => pad + ((width - 2 * pad) * s) / (maxStep || 1);
  const y = (l) => height - pad + 8 - ((height - pad) * (l - lo)) / span;
  const line = points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
  const last = points[points.length - 1];
  return (
    <svg id="aegis-live-loss" width={width} height={height} role="img" aria-label="training loss so far">
      <line x1={pad} y1={height - pad + 8} x2={width - pad} y2={height - pad + 8} stroke="#94a3b8" />
      <line x1={pad} y1={8} x2={pad} y2={height - pad + 8} stroke="#94a3b8" />
      <text x={2} y={14} fontSize="11" fill="#64748b">{hi.toFixed(3)}</text>
      <text x={2} y={height - pad + 8} fontSize="11" fill="#64748b">{lo.toFixed(3)}</text>
      <text x={width - pad - 60} y={height - 6} fontSize="11" fill="#64748b">step {last[0]}/{maxStep}</text>
      <polyline points={line} fill="none" stroke="#2563eb" strokeWidth="2" />
      <circle cx={x(last[0])} cy={y(last[1])} r="3" fill="#2563eb" />
    </svg>
  );
}
