demo:
	python3 dev.py demo

test:
	python3 dev.py test

slicer-test:
	python3 dev.py slicer-test

lint:
	python3 dev.py lint

.PHONY: demo test slicer-test lint
