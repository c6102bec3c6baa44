// A collapsible block under a message (agent/ui/views.py): the full spec, or the full report, closed until clicked.
export default function Details() {
  return (
    <details className="aegis-details w-full rounded-md border border-border p-2 text-sm">
      <summary className="cursor-pointer select-none font-medium">{props.summary}</summary>
      <pre className="mt-2 max-h-[28rem] overflow-auto whitespace-pre-wrap text-xs">{props.body}</pre>
    </details>
  );
}
