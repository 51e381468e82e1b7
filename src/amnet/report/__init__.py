"""The evaluation report of §5: builder, sections, plots and page rendering (HTML + Markdown)."""
