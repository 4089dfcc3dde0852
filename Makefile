demo:
	python3 dev.py demo

test:
	python3 dev.py test

slicer-test:
	python3 dev.py slicer-test

.PHONY: demo test slicer-test
