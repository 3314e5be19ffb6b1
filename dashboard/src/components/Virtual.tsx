/**
 * Virtualised lists with @tanstack/virtual-core: only the rows in view (plus a few) are
 * in the DOM, so 10,000 log lines or 1,000 runs stay responsive.
 */
import type { AriaRole, ComponentChildren, JSX, RefObject } from 'preact';
import { useLayoutEffect, useReducer, useRef, useState } from 'preact/hooks';
import { Virtualizer, elementScroll, observeElementOffset, observeElementRect, type VirtualItem } from '@tanstack/virtual-core';

export interface VirtualListProps {
  count: number;
  rowHeight: number;
  /** Height of the scroll box, CSS. */
  height: string;
  renderRow: (index: number, item: VirtualItem) => ComponentChildren;
  /** Keep the last row in view while the user has not scrolled up (a log tail). */
  follow?: boolean;
  class?: string;
  role?: AriaRole;
  label?: string;
  /** Lets a parent reach the virtualizer (scrollToIndex...). */
  handle?: RefObject<Virtualizer<HTMLDivElement, Element> | null>;
}

export function VirtualList(props: VirtualListProps): JSX.Element {
  const scrollRef = useRef<HTMLDivElement>(null);
  const [, rerender] = useReducer((n: number) => n + 1, 0);
  const atBottom = useRef(true);
  const [virtualizer] = useState(
    () =>
      new Virtualizer<HTMLDivElement, Element>({
        count: props.count,
        getScrollElement: () => scrollRef.current,
        estimateSize: () => props.rowHeight,
        overscan: 12,
        // Rows on the first render already, before the ResizeObserver's first measure (one frame later).
        initialRect: { width: 0, height: window.innerHeight },
        observeElementRect,
        observeElementOffset,
        scrollToFn: elementScroll,
        onChange: () => rerender(0),
      }),
  );
  virtualizer.setOptions({
    ...virtualizer.options,
    count: props.count,
    estimateSize: () => props.rowHeight,
  });
  if (props.handle !== undefined) props.handle.current = virtualizer;
  useLayoutEffect(() => virtualizer._didMount(), [virtualizer]);
  useLayoutEffect(() => {
    virtualizer._willUpdate();
  });
  useLayoutEffect(() => {
    const el = scrollRef.current;
    if (props.follow === true && atBottom.current && el !== null && props.count > 0) el.scrollTop = el.scrollHeight;
  }, [props.count, props.follow]);
  const onScroll = (): void => {
    const el = scrollRef.current;
    if (el !== null) atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < props.rowHeight * 2;
  };
  const items = virtualizer.getVirtualItems();
  return (
    <div
      ref={scrollRef}
      class={`vlist ${props.class ?? ''}`}
      style={{ height: props.height }}
      onScroll={onScroll}
      role={props.role}
      aria-label={props.label}
      tabIndex={0}
    >
      <div style={{ height: `${virtualizer.getTotalSize()}px`, position: 'relative', width: '100%' }}>
        {items.map((item) => (
          <div key={item.key} class="vrow" style={{ position: 'absolute', top: 0, left: 0, right: 0, height: `${item.size}px`, transform: `translateY(${item.start}px)` }}>
            {props.renderRow(item.index, item)}
          </div>
        ))}
      </div>
    </div>
  );
}
