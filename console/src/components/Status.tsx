/** A status as a word with a colour class (the word carries the meaning; colour only helps). */
export function Status({ value }: { value: string }) {
  return <span class={`status status-${value.toLowerCase()}`}>{value}</span>;
}

export function ProgressBar({ fraction, label }: { fraction: number; label: string }) {
  const pct = Math.round(Math.min(1, Math.max(0, fraction)) * 100);
  return (
    <div class="progress">
      <progress max={100} value={pct} aria-label={label} />
      <span>{pct} %</span>
    </div>
  );
}
